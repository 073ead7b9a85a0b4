ALTER TABLE accounts ADD COLUMN country char(2);
