DROP INDEX IF EXISTS "teams_external_id_idx";
--> statement-breakpoint
DROP INDEX IF EXISTS "users_external_id_idx";
