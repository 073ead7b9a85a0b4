ALTER DOMAIN credit_amount ADD CONSTRAINT credit_amount_positive CHECK (VALUE > 0);
