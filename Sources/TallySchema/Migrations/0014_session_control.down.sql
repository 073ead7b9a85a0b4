ALTER TABLE "sessions" DROP COLUMN IF EXISTS "user_agent";
--> statement-breakpoint
ALTER TABLE "sessions" DROP COLUMN IF EXISTS "client_address";
--> statement-breakpoint
ALTER TABLE "sessions" DROP COLUMN IF EXISTS "last_used_at";
