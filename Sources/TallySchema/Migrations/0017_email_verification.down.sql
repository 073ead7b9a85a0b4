CREATE OR REPLACE FUNCTION "tally_member_keys_revoke"() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' OR NEW.role NOT IN ('owner', 'admin') THEN
    UPDATE api_keys SET revoked_at = now(),
      revoked_reason = CASE WHEN TG_OP = 'DELETE' THEN 'its creator left or was removed from the team'
                            ELSE 'its creator is no longer a team owner or admin' END
    WHERE team_id = OLD.team_id AND user_id = OLD.user_id AND revoked_at IS NULL;
  END IF;
  RETURN NULL;
END
$$;
--> statement-breakpoint
DROP TRIGGER IF EXISTS "team_members_verified" ON "team_members";
--> statement-breakpoint
DROP FUNCTION IF EXISTS "tally_member_verified"();
--> statement-breakpoint
DROP INDEX IF EXISTS "password_resets_user_idx";
--> statement-breakpoint
DROP TABLE IF EXISTS "team_invitations";
--> statement-breakpoint
DROP TABLE IF EXISTS "email_verifications";
--> statement-breakpoint
ALTER TABLE "users" DROP CONSTRAINT IF EXISTS "users_admin_verified";
--> statement-breakpoint
ALTER TABLE "users" DROP COLUMN IF EXISTS "email_verified_at";
