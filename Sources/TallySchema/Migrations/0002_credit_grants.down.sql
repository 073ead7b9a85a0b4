ALTER TABLE "credit_transactions" DROP COLUMN IF EXISTS "grant_id";
DROP TABLE IF EXISTS "credit_grants";
