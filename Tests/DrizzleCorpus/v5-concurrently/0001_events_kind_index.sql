-- Custom migration: events is large in production, so the index is built without blocking writes.
CREATE INDEX CONCURRENTLY IF NOT EXISTS "events_kind_idx" ON "events" USING btree ("kind");
