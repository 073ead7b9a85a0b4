CREATE INDEX CONCURRENTLY accounts_created_at_idx ON accounts (created_at);
ALTER TABLE teams ADD COLUMN seats_used bigint;
