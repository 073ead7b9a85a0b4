DROP POLICY accounts_own ON accounts;
