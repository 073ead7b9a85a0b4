-- Why a key stopped working and who stopped it: its creator revoked it, a team owner or admin did, or its
-- creator left or was removed from the team it spends from (which revokes it in the same transaction).
ALTER TABLE "api_keys" ADD COLUMN "revoked_reason" text;
--> statement-breakpoint
ALTER TABLE "api_keys" ADD COLUMN "revoked_by" uuid;
