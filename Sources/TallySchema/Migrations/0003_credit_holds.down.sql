ALTER TABLE "api_key_credits" DROP CONSTRAINT IF EXISTS "api_key_credits_held_check";
ALTER TABLE "api_key_credits" DROP COLUMN IF EXISTS "held";
ALTER TABLE "credit_transactions" DROP COLUMN IF EXISTS "hold_id";
DROP TABLE IF EXISTS "credit_holds";
