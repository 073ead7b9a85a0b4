ALTER TABLE accounts ADD COLUMN nickname varchar(50);
