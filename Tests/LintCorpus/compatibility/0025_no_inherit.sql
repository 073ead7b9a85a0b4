ALTER TABLE archived_accounts NO INHERIT accounts;
