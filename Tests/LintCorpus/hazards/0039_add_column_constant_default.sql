ALTER TABLE accounts ADD COLUMN credits_left bigint NOT NULL DEFAULT 0;
