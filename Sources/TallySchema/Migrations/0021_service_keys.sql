-- Service keys: the product's own backend calls Tally with one (tly_svc_…), for any account, within its scopes.
-- Made by an admin or an operator, shown once, stored as a SHA-256 with a display prefix, revoked at once.
-- Each use is written to the admin audit log by the statement that authenticates it.
CREATE TABLE IF NOT EXISTS "service_keys" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" text NOT NULL,
	"prefix" text NOT NULL,
	"key_hash" text NOT NULL,
	"scopes" text[] NOT NULL,
	"created_by" uuid,
	"created_by_name" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_used_at" timestamp with time zone,
	"revoked_at" timestamp with time zone,
	"revoked_by_name" text,
	CONSTRAINT "service_keys_scopes_check" CHECK (cardinality("scopes") > 0
		AND "scopes" <@ ARRAY['grants:write', 'accounts:read', 'accounts:write', 'keys:write', 'webhooks:write']::text[])
);
--> statement-breakpoint
CREATE UNIQUE INDEX IF NOT EXISTS "service_keys_key_hash_idx" ON "service_keys" USING btree ("key_hash");
--> statement-breakpoint
ALTER TABLE "service_keys" ADD CONSTRAINT "service_keys_created_by_users_id_fk" FOREIGN KEY ("created_by") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "service_keys_created_by_idx" ON "service_keys" USING btree ("created_by");
--> statement-breakpoint
-- The product's own ids for its users and teams (Tally's customers): the API finds, creates and addresses
-- accounts by them. Unique (indexes in the next migration, built without blocking writes), and never the same
-- for a user and a team: the trigger below serialises each id with an advisory lock and looks at the other table.
ALTER TABLE "users" ADD COLUMN IF NOT EXISTS "external_id" text;
--> statement-breakpoint
ALTER TABLE "teams" ADD COLUMN IF NOT EXISTS "external_id" text;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION "tally_external_id_unique"() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.external_id IS NULL OR (TG_OP = 'UPDATE' AND NEW.external_id IS NOT DISTINCT FROM OLD.external_id) THEN
		RETURN NEW;
	END IF;
	IF NEW.external_id !~ '^[!-~]{1,255}$' THEN
		RAISE EXCEPTION 'external id %: 1 to 255 visible ASCII characters, no spaces', left(NEW.external_id, 80)
			USING ERRCODE = 'check_violation', CONSTRAINT = 'external_id_format';
	END IF;
	PERFORM pg_advisory_xact_lock(hashtextextended('external_id:' || NEW.external_id, 7365));
	IF (TG_TABLE_NAME = 'users' AND EXISTS (SELECT 1 FROM teams t WHERE t.external_id = NEW.external_id))
		OR (TG_TABLE_NAME = 'teams' AND EXISTS (SELECT 1 FROM users u WHERE u.external_id = NEW.external_id)) THEN
		RAISE EXCEPTION 'external id % names a % already', NEW.external_id, CASE WHEN TG_TABLE_NAME = 'users' THEN 'team' ELSE 'user' END
			USING ERRCODE = 'unique_violation', CONSTRAINT = 'external_id_unique';
	END IF;
	RETURN NEW;
END
$$;
--> statement-breakpoint
CREATE TRIGGER "users_external_id_unique" BEFORE INSERT OR UPDATE OF "external_id" ON "users"
	FOR EACH ROW EXECUTE FUNCTION "tally_external_id_unique"();
--> statement-breakpoint
CREATE TRIGGER "teams_external_id_unique" BEFORE INSERT OR UPDATE OF "external_id" ON "teams"
	FOR EACH ROW EXECUTE FUNCTION "tally_external_id_unique"();
