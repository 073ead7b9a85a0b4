-- A team's API key lives only while its creator is one of the team's owners or admins, kept by the database
-- so no race and no hand-written SQL leaves a live key behind:
-- * a new team key's creator must be an owner or admin at that moment; the member row is locked FOR SHARE
--   by the insert, so a removal running at the same time waits for it and then sees (and revokes) the key;
-- * removing a member, or making them a plain member, revokes every live key they made for the team in the
--   same transaction, with the reason.
-- And a revoked key's open holds are released at once: they expire at the revocation, so the next read or
-- spend on the account settles them (their credits are available again).
CREATE OR REPLACE FUNCTION "tally_team_key_creator"() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.team_id IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM team_members m
    WHERE m.team_id = NEW.team_id AND m.user_id = NEW.user_id AND m.role IN ('owner', 'admin')
    FOR SHARE) THEN
    RAISE EXCEPTION 'only the team''s owners and admins create its API keys'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END
$$;
--> statement-breakpoint
CREATE TRIGGER "api_keys_team_creator" BEFORE INSERT OR UPDATE OF team_id, user_id ON "api_keys"
  FOR EACH ROW EXECUTE FUNCTION "tally_team_key_creator"();
--> statement-breakpoint
ALTER TABLE "api_keys" ENABLE ALWAYS TRIGGER "api_keys_team_creator";
--> statement-breakpoint
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
CREATE TRIGGER "team_members_keys_revoke" AFTER DELETE OR UPDATE OF role ON "team_members"
  FOR EACH ROW EXECUTE FUNCTION "tally_member_keys_revoke"();
--> statement-breakpoint
ALTER TABLE "team_members" ENABLE ALWAYS TRIGGER "team_members_keys_revoke";
--> statement-breakpoint
CREATE OR REPLACE FUNCTION "tally_revoked_key_holds"() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE credit_holds SET expires_at = now()
  WHERE api_key_id = NEW.id AND status = 'open' AND expires_at > now();
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE TRIGGER "api_keys_revoked_holds" AFTER UPDATE OF revoked_at ON "api_keys"
  FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
  EXECUTE FUNCTION "tally_revoked_key_holds"();
--> statement-breakpoint
ALTER TABLE "api_keys" ENABLE ALWAYS TRIGGER "api_keys_revoked_holds";
