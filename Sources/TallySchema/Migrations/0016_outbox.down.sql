DROP TABLE IF EXISTS "password_resets";
--> statement-breakpoint
DROP TABLE IF EXISTS "outbox";
