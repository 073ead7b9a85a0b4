CREATE OR REPLACE FUNCTION "tally_committed_balance"("p_user" uuid, "p_team" uuid, "p_key" uuid)
RETURNS TABLE ("account_id" uuid, "balance" bigint, "held" bigint, "due" boolean, "grant_id" uuid, "remaining" bigint, "expires_at" timestamptz, "priority" integer)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
-- The balance read (Ledger.committedBalance) for connections that cannot keep prepared statements (a
-- transaction-mode pooler such as PgBouncer before 1.21): PL/pgSQL keeps the plan of the query below in the
-- server's session, so each call plans only this function call. The same statement as CommittedBalance's
-- SQL: the account of the user ($1) or team ($2), if the API key ($3, or NULL for a session) is live, whether
-- anything is due, and its open grants in burn order.
BEGIN
  RETURN QUERY
  WITH acct AS (
    SELECT a.id, a.balance, a.held,
      EXISTS (SELECT 1 FROM credit_holds h WHERE h.account_id = a.id AND h.status = 'open' AND h.expires_at <= now())
      OR (a.balance > a.held AND EXISTS (SELECT 1 FROM credit_grants g WHERE g.account_id = a.id AND g.remaining > 0 AND g.expires_at <= now())) AS due
    FROM user_credits a
    WHERE (a.user_id = p_user OR a.team_id = p_team)
      AND (p_key IS NULL OR EXISTS (SELECT 1 FROM api_keys k WHERE k.id = p_key AND k.revoked_at IS NULL)))
  SELECT acct.id, acct.balance, acct.held, acct.due, g.id, g.remaining, g.expires_at, g.priority
  FROM acct LEFT JOIN credit_grants g ON g.account_id = acct.id AND g.remaining > 0 AND NOT acct.due
  ORDER BY g.priority, g.expires_at NULLS LAST, g.created_at, g.id;
END
$$;
