ALTER TABLE accounts ADD CONSTRAINT accounts_team_id_fk FOREIGN KEY (team_id) REFERENCES teams (id);
