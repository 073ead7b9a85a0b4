ALTER TABLE "credit_grants" DROP COLUMN IF EXISTS "request_id";
--> statement-breakpoint
ALTER TABLE "credit_grants" DROP COLUMN IF EXISTS "granted_by";
--> statement-breakpoint
DROP TABLE IF EXISTS "admin_audit";
--> statement-breakpoint
DROP FUNCTION IF EXISTS "tally_append_only"();
