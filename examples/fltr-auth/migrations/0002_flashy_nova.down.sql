ALTER TABLE "user_credits" DROP CONSTRAINT IF EXISTS "user_credits_user_id_users_id_fk";
