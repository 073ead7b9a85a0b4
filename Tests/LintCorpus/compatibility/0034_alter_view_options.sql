ALTER VIEW active_accounts SET (security_barrier = true);
