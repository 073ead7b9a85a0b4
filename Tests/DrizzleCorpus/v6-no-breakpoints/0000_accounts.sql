CREATE TABLE IF NOT EXISTS "accounts" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" text
);
CREATE TABLE IF NOT EXISTS "members" (
	"account_id" uuid NOT NULL,
	"user_name" text NOT NULL
);
INSERT INTO "accounts" ("id", "name") VALUES ('00000000-0000-0000-0000-000000000001', 'acme; the first');
INSERT INTO "members" VALUES ('00000000-0000-0000-0000-000000000001', 'ada');
