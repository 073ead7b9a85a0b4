CREATE OR REPLACE VIEW active_accounts AS SELECT id, email FROM accounts WHERE status <> 'closed';
