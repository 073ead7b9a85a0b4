-- What admins (and operators at the command line) did, kept append-only by the database like the ledger:
-- who, when, which request, what. A grant also names its granting admin and request on the grant itself.
CREATE TABLE IF NOT EXISTS "admin_audit" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	"actor_user_id" uuid,
	"actor" text NOT NULL,
	"action" text NOT NULL,
	"request_id" text,
	"subject" jsonb NOT NULL
);
--> statement-breakpoint
CREATE OR REPLACE FUNCTION "tally_append_only"() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% on %: the table is append-only', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege', HINT = 'Record what happened as a new row.';
END
$$;
--> statement-breakpoint
CREATE TRIGGER "admin_audit_append_only" BEFORE UPDATE OR DELETE ON "admin_audit"
  FOR EACH ROW EXECUTE FUNCTION "tally_append_only"();
--> statement-breakpoint
ALTER TABLE "admin_audit" ENABLE ALWAYS TRIGGER "admin_audit_append_only";
--> statement-breakpoint
CREATE TRIGGER "admin_audit_no_truncate" BEFORE TRUNCATE ON "admin_audit"
  FOR EACH STATEMENT EXECUTE FUNCTION "tally_append_only"();
--> statement-breakpoint
ALTER TABLE "admin_audit" ENABLE ALWAYS TRIGGER "admin_audit_no_truncate";
--> statement-breakpoint
ALTER TABLE "credit_grants" ADD COLUMN IF NOT EXISTS "granted_by" uuid;
--> statement-breakpoint
ALTER TABLE "credit_grants" ADD COLUMN IF NOT EXISTS "request_id" text;
