DROP DOMAIN credit_amount;
