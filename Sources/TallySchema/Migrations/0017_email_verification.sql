-- Emails are proven before they count. A sign-up makes an unverified user and mails a link; following it
-- verifies the address (and sets the password chosen with that sign-up, so a second sign-up for an address
-- nobody has proven cannot take it over). Accounts made before this migration, and by operators, are verified.
-- The database keeps what must never happen: an unverified user is never a site admin nor in a team.
ALTER TABLE "users" ADD COLUMN IF NOT EXISTS "email_verified_at" timestamp with time zone;
--> statement-breakpoint
UPDATE "users" SET "email_verified_at" = "created_at" WHERE "email_verified_at" IS NULL;
--> statement-breakpoint
ALTER TABLE "users" ADD CONSTRAINT "users_admin_verified" CHECK (NOT "is_admin" OR "email_verified_at" IS NOT NULL) NOT VALID;
--> statement-breakpoint
ALTER TABLE "users" VALIDATE CONSTRAINT "users_admin_verified";
--> statement-breakpoint
CREATE TABLE IF NOT EXISTS "email_verifications" (
	"token_hash" text PRIMARY KEY NOT NULL,
	"user_id" uuid NOT NULL,
	"password_hash" text NOT NULL,
	"client_address" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"used_at" timestamp with time zone
);
--> statement-breakpoint
ALTER TABLE "email_verifications" ADD CONSTRAINT "email_verifications_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "email_verifications_user_idx" ON "email_verifications" USING btree ("user_id");
--> statement-breakpoint
-- Invitations: a team's owner or admin invites an address; the user who has verified that address accepts.
-- One pending invitation per team and address (inviting again renews it).
CREATE TABLE IF NOT EXISTS "team_invitations" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"team_id" uuid NOT NULL,
	"email" text NOT NULL,
	"role" text NOT NULL,
	"invited_by" uuid NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"accepted_at" timestamp with time zone,
	"accepted_by" uuid,
	"revoked_at" timestamp with time zone,
	CONSTRAINT "team_invitations_role_check" CHECK ("role" IN ('owner', 'admin', 'member'))
);
--> statement-breakpoint
ALTER TABLE "team_invitations" ADD CONSTRAINT "team_invitations_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE cascade ON UPDATE no action;
--> statement-breakpoint
ALTER TABLE "team_invitations" ADD CONSTRAINT "team_invitations_invited_by_users_id_fk" FOREIGN KEY ("invited_by") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;
--> statement-breakpoint
CREATE UNIQUE INDEX IF NOT EXISTS "team_invitations_pending_idx" ON "team_invitations" USING btree ("team_id", lower("email")) WHERE "accepted_at" IS NULL AND "revoked_at" IS NULL;
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "team_invitations_invited_by_idx" ON "team_invitations" USING btree ("invited_by");
--> statement-breakpoint
-- Deleting a user no longer scans password_resets (its foreign key came without an index in 0016).
CREATE INDEX IF NOT EXISTS "password_resets_user_idx" ON "password_resets" USING btree ("user_id");
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "team_invitations_email_idx" ON "team_invitations" USING btree (lower("email")) WHERE "accepted_at" IS NULL AND "revoked_at" IS NULL;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION "tally_member_verified"() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM users WHERE id = NEW.user_id AND email_verified_at IS NOT NULL) THEN
    RAISE EXCEPTION 'only users who have verified their email join teams'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END
$$;
--> statement-breakpoint
CREATE TRIGGER "team_members_verified" BEFORE INSERT OR UPDATE OF user_id ON "team_members"
  FOR EACH ROW EXECUTE FUNCTION "tally_member_verified"();
--> statement-breakpoint
ALTER TABLE "team_members" ENABLE ALWAYS TRIGGER "team_members_verified";
--> statement-breakpoint
-- A member who is removed or is no longer an owner or admin loses their team keys (0012) and their pending
-- invitations: what they could do ends with their role.
CREATE OR REPLACE FUNCTION "tally_member_keys_revoke"() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' OR NEW.role NOT IN ('owner', 'admin') THEN
    UPDATE api_keys SET revoked_at = now(),
      revoked_reason = CASE WHEN TG_OP = 'DELETE' THEN 'its creator left or was removed from the team'
                            ELSE 'its creator is no longer a team owner or admin' END
    WHERE team_id = OLD.team_id AND user_id = OLD.user_id AND revoked_at IS NULL;
    UPDATE team_invitations SET revoked_at = now()
    WHERE team_id = OLD.team_id AND invited_by = OLD.user_id AND accepted_at IS NULL AND revoked_at IS NULL;
  END IF;
  IF TG_OP = 'UPDATE' AND OLD.role = 'owner' AND NEW.role <> 'owner' THEN
    UPDATE team_invitations SET revoked_at = now()
    WHERE team_id = OLD.team_id AND invited_by = OLD.user_id AND role = 'owner' AND accepted_at IS NULL AND revoked_at IS NULL;
  END IF;
  RETURN NULL;
END
$$;
