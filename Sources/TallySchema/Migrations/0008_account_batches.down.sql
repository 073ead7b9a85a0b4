CREATE OR REPLACE FUNCTION "tally_consume"("spends" jsonb)
RETURNS TABLE ("idx" integer, "outcome" text, "transaction_id" bigint, "balance" bigint, "available" bigint, "key_limit" bigint, "key_used" bigint, "key_held" bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
-- Spends a batch of [{key_id, user_id, team_id, amount, description, metadata}] in one call, combined per
-- account: every account in the batch is locked once (in id order, so batches never deadlock), the spends are
-- decided in arrival order while the running total fits the account's available credits and each key's
-- allowance (a refused spend writes nothing, and later spends still get what remains), and then each account
-- is updated once, each key's `used` once, grants burn once per account for its accepted total (by priority,
-- soonest expiry, age), and the ledger rows go in with one insert, each with its own balance_after.
-- Outcome per spend: 'ok'; 'insufficient-credits'; 'key-limit-exceeded'; 'revoked' (the key was revoked or
-- deleted since the caller authenticated it); 'settle' (the account is new or has expiries due: the caller
-- settles it, Ledger.lockAccount, and retries that spend).
DECLARE
	n_ integer;
	key_ids_ uuid[]; user_ids_ uuid[]; team_ids_ uuid[]; amounts_ bigint[]; descriptions_ text[]; metadata_ jsonb[];
	-- Per spend.
	accounts_ uuid[]; outcomes_ text[]; after_ bigint[]; avail_ bigint[]; limit_ bigint[]; used_ bigint[]; held_ bigint[]; tx_ bigint[];
	-- Per locked account (id order) and per key with an allowance row (id order).
	live_ uuid[];
	acct_ids_ uuid[]; acct_balance_ bigint[]; acct_held_ bigint[]; acct_due_ boolean[]; acct_spent_ bigint[];
	key_row_ids_ uuid[]; key_limits_ bigint[]; key_used_ bigint[]; key_held_ bigint[]; key_spent_ bigint[];
	i integer; a integer; k integer;
	short_account_ uuid; short_spent_ bigint; short_taken_ bigint;
BEGIN
	SELECT count(*)::int,
		array_agg((s.v->>'key_id')::uuid ORDER BY s.o), array_agg((s.v->>'user_id')::uuid ORDER BY s.o),
		array_agg((s.v->>'team_id')::uuid ORDER BY s.o), array_agg((s.v->>'amount')::bigint ORDER BY s.o),
		array_agg(s.v->>'description' ORDER BY s.o), array_agg(s.v->'metadata' ORDER BY s.o)
	INTO n_, key_ids_, user_ids_, team_ids_, amounts_, descriptions_, metadata_
	FROM jsonb_array_elements(spends) WITH ORDINALITY AS s(v, o);
	IF n_ = 0 THEN RETURN; END IF;
	outcomes_ := array_fill(NULL::text, ARRAY[n_]);
	after_ := array_fill(NULL::bigint, ARRAY[n_]); avail_ := after_; limit_ := after_; used_ := after_; held_ := after_; tx_ := after_;

	-- The caller may know a key from a cache: whether it is still live is decided here, at spend time.
	SELECT coalesce(array_agg(k.id), '{}') INTO live_ FROM api_keys k WHERE k.id = ANY(key_ids_) AND k.revoked_at IS NULL;

	-- Each spend's account; then every account locked once, in id order.
	SELECT array_agg(CASE WHEN s.t IS NOT NULL THEN (SELECT a.id FROM user_credits a WHERE a.team_id = s.t)
		ELSE (SELECT a.id FROM user_credits a WHERE a.user_id = s.u) END ORDER BY s.o)
	INTO accounts_ FROM unnest(user_ids_, team_ids_) WITH ORDINALITY AS s(u, t, o);
	SELECT coalesce(array_agg(l.id ORDER BY l.id), '{}'), coalesce(array_agg(l.balance ORDER BY l.id), '{}'), coalesce(array_agg(l.held ORDER BY l.id), '{}')
	INTO acct_ids_, acct_balance_, acct_held_
	FROM (SELECT a.id, a.balance, a.held FROM user_credits a WHERE a.id = ANY(accounts_) ORDER BY a.id FOR UPDATE) l;
	-- Expiries due, read under the lock: such an account's spends go back to the caller to settle. (Expired
	-- grants under open holds stay until the holds settle, so they are only due when credits are unheld.)
	SELECT coalesce(array_agg(
		EXISTS (SELECT 1 FROM credit_holds h WHERE h.account_id = x.id AND h.status = 'open' AND h.expires_at <= now())
		OR (x.b > x.h AND EXISTS (SELECT 1 FROM credit_grants g WHERE g.account_id = x.id AND g.remaining > 0 AND g.expires_at <= now()))
		ORDER BY x.o), '{}')
	INTO acct_due_ FROM unnest(acct_ids_, acct_balance_, acct_held_) WITH ORDINALITY AS x(id, b, h, o);
	acct_spent_ := array_fill(0::bigint, ARRAY[coalesce(array_length(acct_ids_, 1), 0)]);

	-- The keys' allowances, locked in id order (after the accounts, as everywhere). A key without a row has
	-- no limit; it gets one below, with what it spent.
	SELECT coalesce(array_agg(c.api_key_id ORDER BY c.api_key_id), '{}'), coalesce(array_agg(c.credit_limit ORDER BY c.api_key_id), '{}'),
		coalesce(array_agg(c.used ORDER BY c.api_key_id), '{}'), coalesce(array_agg(c.held ORDER BY c.api_key_id), '{}')
	INTO key_row_ids_, key_limits_, key_used_, key_held_
	FROM (SELECT c.api_key_id, c.credit_limit, c.used, c.held FROM api_key_credits c WHERE c.api_key_id = ANY(live_) ORDER BY c.api_key_id FOR UPDATE) c;
	key_spent_ := array_fill(0::bigint, ARRAY[coalesce(array_length(key_row_ids_, 1), 0)]);

	-- Decide, in arrival order.
	FOR i IN 1..n_ LOOP
		IF NOT (key_ids_[i] = ANY(live_)) THEN outcomes_[i] := 'revoked'; CONTINUE; END IF;
		a := array_position(acct_ids_, accounts_[i]);
		IF a IS NULL OR acct_due_[a] THEN outcomes_[i] := 'settle'; CONTINUE; END IF;
		after_[i] := acct_balance_[a] - acct_spent_[a];
		avail_[i] := after_[i] - acct_held_[a];
		IF avail_[i] < amounts_[i] THEN outcomes_[i] := 'insufficient-credits'; CONTINUE; END IF;
		k := array_position(key_row_ids_, key_ids_[i]);
		IF k IS NOT NULL AND key_limits_[k] IS NOT NULL AND key_used_[k] + key_spent_[k] + key_held_[k] + amounts_[i] > key_limits_[k] THEN
			outcomes_[i] := 'key-limit-exceeded';
			limit_[i] := key_limits_[k]; used_[i] := key_used_[k] + key_spent_[k]; held_[i] := key_held_[k];
			CONTINUE;
		END IF;
		IF k IS NOT NULL THEN key_spent_[k] := key_spent_[k] + amounts_[i]; END IF;
		acct_spent_[a] := acct_spent_[a] + amounts_[i];
		after_[i] := after_[i] - amounts_[i];
		avail_[i] := avail_[i] - amounts_[i];
		outcomes_[i] := 'ok';
	END LOOP;

	IF 'ok' = ANY(outcomes_) THEN
		UPDATE user_credits a SET balance = a.balance - v.spent, updated_at = now()
		FROM unnest(acct_ids_, acct_spent_) AS v(id, spent) WHERE a.id = v.id AND v.spent > 0;

		INSERT INTO api_key_credits AS c (api_key_id, user_id, used)
		SELECT s.k, (array_agg(s.u))[1], sum(s.amount)::bigint
		FROM unnest(key_ids_, user_ids_, amounts_, outcomes_) AS s(k, u, amount, outcome) WHERE s.outcome = 'ok' GROUP BY s.k
		ON CONFLICT (api_key_id) DO UPDATE SET used = c.used + excluded.used;

		WITH totals AS (
			SELECT v.id AS account_id, v.spent FROM unnest(acct_ids_, acct_spent_) AS v(id, spent) WHERE v.spent > 0
		), ordered AS (
			SELECT g.id, g.account_id, t.spent, g.remaining,
				(sum(g.remaining) OVER (PARTITION BY g.account_id ORDER BY g.priority, g.expires_at NULLS LAST, g.created_at, g.id))::bigint - g.remaining AS before
			FROM credit_grants g JOIN totals t ON t.account_id = g.account_id WHERE g.remaining > 0
		), chosen AS (
			SELECT o.id, o.account_id, LEAST(o.remaining, o.spent - o.before) AS take FROM ordered o WHERE o.before < o.spent
		), burned AS (
			UPDATE credit_grants g SET remaining = g.remaining - c.take FROM chosen c WHERE g.id = c.id RETURNING c.account_id, c.take
		)
		SELECT t.account_id, t.spent, coalesce((SELECT sum(b.take) FROM burned b WHERE b.account_id = t.account_id), 0)::bigint
		INTO short_account_, short_spent_, short_taken_
		FROM totals t WHERE t.spent <> coalesce((SELECT sum(b.take) FROM burned b WHERE b.account_id = t.account_id), 0)
		LIMIT 1;
		IF short_account_ IS NOT NULL THEN
			RAISE EXCEPTION 'the grants of account % cover % of spends of %; run tally db audit', short_account_, short_taken_, short_spent_;
		END IF;

		-- Within an account balance_after falls with every accepted spend, so (account, balance_after) names
		-- each new row.
		WITH inserted AS (
			INSERT INTO credit_transactions (account_id, user_id, team_id, api_key_id, kind, amount, balance_after, description, metadata)
			SELECT s.a, s.u, s.t, s.k, 'consume', -s.amount, s.b, s.d, s.m
			FROM unnest(accounts_, user_ids_, team_ids_, key_ids_, amounts_, after_, descriptions_, metadata_, outcomes_) WITH ORDINALITY
				AS s(a, u, t, k, amount, b, d, m, outcome, o)
			WHERE s.outcome = 'ok' ORDER BY s.o
			RETURNING id, account_id, balance_after
		)
		SELECT array_agg(ins.id ORDER BY s.o) INTO tx_
		FROM unnest(accounts_, after_, outcomes_) WITH ORDINALITY AS s(a, b, outcome, o)
		LEFT JOIN inserted ins ON s.outcome = 'ok' AND ins.account_id = s.a AND ins.balance_after = s.b;
	END IF;

	RETURN QUERY SELECT (s.o - 1)::integer, s.outcome, s.tx, s.b, s.av, s.lim, s.used, s.held
	FROM unnest(outcomes_, tx_, after_, avail_, limit_, used_, held_) WITH ORDINALITY AS s(outcome, tx, b, av, lim, used, held, o);
END
$$;
--> statement-breakpoint
DROP FUNCTION IF EXISTS "tally_apply"(jsonb);
