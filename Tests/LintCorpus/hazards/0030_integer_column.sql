ALTER TABLE teams ADD COLUMN seats integer;
