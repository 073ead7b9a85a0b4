-- One user and one team at most per external id (the trigger of the previous migration keeps a user's and a
-- team's apart). Built CONCURRENTLY, so sign-ups and logins go on meanwhile.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "users_external_id_idx" ON "users" USING btree ("external_id");
--> statement-breakpoint
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "teams_external_id_idx" ON "teams" USING btree ("external_id");
