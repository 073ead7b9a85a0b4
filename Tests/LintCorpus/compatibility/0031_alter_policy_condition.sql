ALTER POLICY accounts_own ON accounts USING (status = 'active');
