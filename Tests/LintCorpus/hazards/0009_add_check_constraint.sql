ALTER TABLE accounts ADD CONSTRAINT accounts_score_check CHECK (score >= 0);
