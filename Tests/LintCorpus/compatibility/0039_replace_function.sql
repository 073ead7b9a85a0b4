CREATE OR REPLACE FUNCTION account_score(account bigint) RETURNS integer LANGUAGE sql AS 'SELECT coalesce(score, 0) FROM accounts WHERE id = account';
