ALTER TABLE teams ADD COLUMN tier smallint;
