-- The maintenance round runs every few seconds and purges accounts never verified and outbox messages a week
-- old: these indexes let it find them without reading the whole users and outbox tables each time. Built
-- CONCURRENTLY, so writes to either table go on meanwhile.
CREATE INDEX CONCURRENTLY IF NOT EXISTS "users_unverified_idx" ON "users" USING btree ("created_at") WHERE "email_verified_at" IS NULL;
--> statement-breakpoint
CREATE INDEX CONCURRENTLY IF NOT EXISTS "outbox_created_idx" ON "outbox" USING btree ("created_at");
