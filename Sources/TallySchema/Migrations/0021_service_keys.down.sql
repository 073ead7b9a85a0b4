DROP TRIGGER IF EXISTS "teams_external_id_unique" ON "teams";
--> statement-breakpoint
DROP TRIGGER IF EXISTS "users_external_id_unique" ON "users";
--> statement-breakpoint
DROP FUNCTION IF EXISTS "tally_external_id_unique"();
--> statement-breakpoint
ALTER TABLE "teams" DROP COLUMN IF EXISTS "external_id";
--> statement-breakpoint
ALTER TABLE "users" DROP COLUMN IF EXISTS "external_id";
--> statement-breakpoint
DROP TABLE IF EXISTS "service_keys";
