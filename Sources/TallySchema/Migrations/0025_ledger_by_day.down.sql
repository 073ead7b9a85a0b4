DROP INDEX IF EXISTS "credit_transactions_account_created_idx";
