ALTER TABLE accounts ALTER COLUMN score TYPE bigint;
