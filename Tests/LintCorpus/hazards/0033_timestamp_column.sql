ALTER TABLE teams ADD COLUMN archived_at timestamp;
