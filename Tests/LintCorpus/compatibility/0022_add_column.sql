ALTER TABLE teams ADD COLUMN region text;
