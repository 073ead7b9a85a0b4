--> statement-breakpoint
DROP TRIGGER IF EXISTS "api_keys_revoked_holds" ON "api_keys";
--> statement-breakpoint
DROP FUNCTION IF EXISTS "tally_revoked_key_holds"();
--> statement-breakpoint
DROP TRIGGER IF EXISTS "team_members_keys_revoke" ON "team_members";
--> statement-breakpoint
DROP FUNCTION IF EXISTS "tally_member_keys_revoke"();
--> statement-breakpoint
DROP TRIGGER IF EXISTS "api_keys_team_creator" ON "api_keys";
--> statement-breakpoint
DROP FUNCTION IF EXISTS "tally_team_key_creator"();
