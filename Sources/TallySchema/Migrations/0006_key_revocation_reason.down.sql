ALTER TABLE "api_keys" DROP COLUMN "revoked_by";
--> statement-breakpoint
ALTER TABLE "api_keys" DROP COLUMN "revoked_reason";
