ALTER POLICY accounts_own ON accounts TO PUBLIC;
