DROP FUNCTION account_score(bigint);
