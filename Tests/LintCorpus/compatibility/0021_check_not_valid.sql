ALTER TABLE accounts ADD CONSTRAINT accounts_note_length CHECK (length(note) < 1000) NOT VALID;
