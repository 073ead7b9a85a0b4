DROP TABLE IF EXISTS "api_key_credits";
DROP TABLE IF EXISTS "api_keys";
DROP TABLE IF EXISTS "credit_transactions";
DROP TABLE IF EXISTS "user_credits";
DROP TABLE IF EXISTS "team_members";
DROP TABLE IF EXISTS "teams";
DROP TABLE IF EXISTS "users";
