CREATE POLICY accounts_team ON accounts USING (team_id IS NOT NULL);
