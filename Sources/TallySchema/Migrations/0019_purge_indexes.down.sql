DROP INDEX IF EXISTS "outbox_created_idx";
--> statement-breakpoint
DROP INDEX IF EXISTS "users_unverified_idx";
