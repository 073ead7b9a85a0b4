-- tally_settle and tally_apply as 0020_account_rules made them; the webhook and alert tables go.
CREATE OR REPLACE FUNCTION "tally_settle"("p_account" uuid) RETURNS TABLE ("balance" bigint, "held" bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
	balance_ bigint;
	held_ bigint;
	k record;
BEGIN
	SELECT a.balance, a.held INTO balance_, held_ FROM user_credits a WHERE a.id = p_account FOR UPDATE;
	IF NOT FOUND THEN RETURN; END IF;
	IF tally_due(p_account, balance_, held_) THEN
		FOR k IN
			WITH expired AS (
				UPDATE credit_holds h SET status = 'expired', settled_at = now()
				WHERE h.account_id = p_account AND h.status = 'open' AND h.expires_at <= now()
				RETURNING h.api_key_id, h.amount
			)
			SELECT e.api_key_id, sum(e.amount)::bigint AS amount FROM expired e GROUP BY e.api_key_id ORDER BY e.api_key_id
		LOOP
			UPDATE api_key_credits c SET held = c.held - k.amount WHERE c.api_key_id = k.api_key_id;
			held_ := held_ - k.amount;
		END LOOP;
		balance_ := tally_expire_grants(p_account, balance_, held_, 'grant expired');
		UPDATE user_credits a SET balance = balance_, held = held_, updated_at = now() WHERE a.id = p_account;
	END IF;
	RETURN QUERY SELECT balance_, held_;
END
$$;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION "tally_apply"("ops" jsonb)
RETURNS TABLE ("idx" integer, "outcome" text, "transaction_id" bigint, "balance" bigint, "held" bigint, "available" bigint,
	"key_limit" bigint, "key_used" bigint, "key_held" bigint,
	"hold_id" uuid, "hold_amount" bigint, "captured" bigint, "expires_at" timestamptz, "replayed" boolean)
LANGUAGE plpgsql
-- Its statements run with generic plans, made once per connection: left to choose, PostgreSQL plans most of
-- them again on every call (their array parameters make a custom plan look cheaper), which cost a third of
-- the call.
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
-- Applies a batch of account operations in one call, combined per account: spends ('consume'), new holds
-- ('hold'), and captures and releases of open holds. Each element: {op, key_id, user_id, team_id} and
--   consume: amount, description, metadata;   hold: amount, ttl (seconds), description;
--   capture: hold_id, amount (null: all of it);   release: hold_id.
-- Every account in the batch is locked once (in id order, so batches never deadlock), then the holds it
-- names, then the keys' allowance rows (id order, as everywhere). The operations are decided in arrival order
-- against each account's running balance and held credits and each key's running allowance; a refused one
-- writes nothing and later ones still get what remains. Then each account is updated once, each key's
-- allowance once, grants burn once per account for what it spent and captured (by priority, soonest expiry,
-- age), new holds go in with one insert, settled ones with one update, and the ledger rows with one insert,
-- each with its own balance_after.
-- An account the batch names that does not exist yet is created (in owner order, so two batches never wait on
-- each other's new accounts); one with something due is settled first (tally_settle).
-- Outcome per operation (the Swift side reads them as OperationOutcome.Kind): 'ok'; 'insufficient-credits';
-- 'key-limit-exceeded'; 'revoked' (the key was revoked or deleted since the caller authenticated it);
-- 'again' (an earlier capture or release in the batch unheld credits of an expired grant, which leave at the
-- end of the batch: the operation is decided in the next one); 'hold-not-found' (no such hold on this
-- account); 'hold-captured', 'hold-released', 'hold-expired' (the hold is settled already);
-- 'capture-exceeds-hold'.
-- A capture or release that leaves an expired grant with unheld credits expires them ('expire' rows) at the
-- end, as settling would, and answers the balance after that.
-- An operation may carry `idempotency`: {scope, key, hash, method, path, retention (seconds)} of its
-- request's Idempotency-Key. What it decides is kept in idempotency_keys in this transaction, so the kept answer
-- exists if and only if the change committed; a key with an outcome kept answers that outcome again
-- (`replayed`), without deciding anything; a key kept for another request is 'idempotency-key-reused'; a key
-- whose request runs now elsewhere (the same advisory lock the server's own transactions take) is
-- 'idempotency-in-progress'; a key kept with a whole answer (by the server) is 'idempotency-answer-kept'; an
-- operation repeating a key earlier in the batch answers what that one decided.
DECLARE
	n_ integer;
	ops_ text[]; key_ids_ uuid[]; user_ids_ uuid[]; team_ids_ uuid[]; amounts_ bigint[]; ttls_ integer[];
	descriptions_ text[]; metadata_ jsonb[]; hold_refs_ uuid[]; claims_ jsonb[];
	-- Per operation: the outcome kept for its Idempotency-Key to answer again, and the earlier operation of
	-- the batch with the same key.
	replay_ jsonb[]; replayed_ boolean[]; claim_first_ integer[]; kept_ jsonb;
	stored_hash_ text; stored_method_ text; stored_path_ text; stored_ jsonb; j integer;
	-- Per operation.
	accounts_ uuid[]; outcomes_ text[]; after_ bigint[]; held_after_ bigint[]; avail_ bigint[];
	limit_ bigint[]; used_ bigint[]; kheld_ bigint[]; tx_ bigint[];
	hold_ids_ uuid[]; hold_amounts_ bigint[]; captured_ bigint[]; expires_ timestamptz[];
	-- Per locked account (id order): running balance and held, what burns from grants, whether expired grants
	-- are left (and must leave once a capture or release unholds their credits).
	live_ uuid[];
	acct_ids_ uuid[]; acct_balance_ bigint[]; acct_held_ bigint[]; acct_due_ boolean[]; acct_expired_left_ boolean[];
	acct_burn_ bigint[]; acct_changed_ boolean[]; acct_expire_ boolean[];
	-- Holds named by captures and releases (id order), locked.
	h_ids_ uuid[]; h_accounts_ uuid[]; h_keys_ uuid[]; h_amounts_ bigint[]; h_descriptions_ text[]; h_expires_ timestamptz[]; h_status_ text[];
	-- Every key the batch charges (id order): its allowance row (if any), its owner, what the batch adds.
	k_ids_ uuid[]; k_users_ uuid[]; k_teams_ uuid[]; k_rows_ boolean[]; k_limits_ bigint[]; k_used_ bigint[]; k_held_ bigint[];
	k_dused_ bigint[]; k_dheld_ bigint[];
	i integer; a integer; k integer; h integer; settled_balance_ bigint; settled_held_ bigint;
	short_account_ uuid; short_spent_ bigint; short_taken_ bigint;
BEGIN
	SELECT count(*)::int,
		array_agg(coalesce(s.v->>'op', 'consume') ORDER BY s.o),
		array_agg((s.v->>'key_id')::uuid ORDER BY s.o), array_agg((s.v->>'user_id')::uuid ORDER BY s.o),
		array_agg((s.v->>'team_id')::uuid ORDER BY s.o), array_agg((s.v->>'amount')::bigint ORDER BY s.o),
		array_agg((s.v->>'ttl')::integer ORDER BY s.o),
		array_agg(s.v->>'description' ORDER BY s.o), array_agg(s.v->'metadata' ORDER BY s.o),
		array_agg((s.v->>'hold_id')::uuid ORDER BY s.o), array_agg(nullif(s.v->'idempotency', 'null'::jsonb) ORDER BY s.o)
	INTO n_, ops_, key_ids_, user_ids_, team_ids_, amounts_, ttls_, descriptions_, metadata_, hold_refs_, claims_
	FROM jsonb_array_elements(ops) WITH ORDINALITY AS s(v, o);
	IF n_ = 0 THEN RETURN; END IF;
	outcomes_ := array_fill(NULL::text, ARRAY[n_]);
	after_ := array_fill(NULL::bigint, ARRAY[n_]); held_after_ := after_; avail_ := after_; limit_ := after_; used_ := after_;
	kheld_ := after_; tx_ := after_; hold_amounts_ := after_; captured_ := after_;
	hold_ids_ := array_fill(NULL::uuid, ARRAY[n_]); expires_ := array_fill(NULL::timestamptz, ARRAY[n_]);
	replay_ := array_fill(NULL::jsonb, ARRAY[n_]); replayed_ := array_fill(false, ARRAY[n_]); claim_first_ := array_fill(NULL::integer, ARRAY[n_]);

	-- Idempotency-Keys first: the lock on the key, then what is kept for it.
	FOR i IN 1..n_ LOOP
		CONTINUE WHEN claims_[i] IS NULL;
		FOR j IN 1..i - 1 LOOP
			IF claims_[j] IS NOT NULL AND claims_[j]->>'scope' = claims_[i]->>'scope' AND claims_[j]->>'key' = claims_[i]->>'key' THEN
				claim_first_[i] := j;
				EXIT;
			END IF;
		END LOOP;
		IF claim_first_[i] IS NOT NULL THEN
			outcomes_[i] := CASE WHEN claims_[claim_first_[i]] = claims_[i] THEN 'replay' ELSE 'idempotency-key-reused' END;
			CONTINUE;
		END IF;
		IF NOT pg_try_advisory_xact_lock(hashtextextended((claims_[i]->>'scope') || ':' || (claims_[i]->>'key'), 7365)) THEN
			outcomes_[i] := 'idempotency-in-progress';
			CONTINUE;
		END IF;
		SELECT k.request_hash, k.method, k.path, k.outcome INTO stored_hash_, stored_method_, stored_path_, stored_
		FROM idempotency_keys k
		WHERE k.scope = claims_[i]->>'scope' AND k.key = claims_[i]->>'key'
			AND k.created_at > now() - make_interval(secs => (claims_[i]->>'retention')::double precision);
		CONTINUE WHEN NOT FOUND;
		IF stored_hash_ <> claims_[i]->>'hash' OR stored_method_ <> claims_[i]->>'method' OR stored_path_ <> claims_[i]->>'path' THEN
			outcomes_[i] := 'idempotency-key-reused';
		ELSIF stored_ IS NULL THEN
			outcomes_[i] := 'idempotency-answer-kept';
		ELSE
			outcomes_[i] := 'replay';
			replay_[i] := stored_;
		END IF;
	END LOOP;

	-- The caller may know a key from a cache: whether it is still live is decided here.
	SELECT coalesce(array_agg(k.id), '{}') INTO live_ FROM api_keys k WHERE k.id = ANY(key_ids_) AND k.revoked_at IS NULL;

	-- Each operation's account, created on first use (only for owners that exist); then every account locked
	-- once, in id order.
	SELECT array_agg(CASE WHEN s.t IS NOT NULL THEN (SELECT a.id FROM user_credits a WHERE a.team_id = s.t)
		ELSE (SELECT a.id FROM user_credits a WHERE a.user_id = s.u) END ORDER BY s.o)
	INTO accounts_ FROM unnest(user_ids_, team_ids_) WITH ORDINALITY AS s(u, t, o);
	IF array_position(accounts_, NULL) IS NOT NULL THEN
		INSERT INTO user_credits (user_id, team_id)
		SELECT n.u, n.t FROM (
			SELECT DISTINCT CASE WHEN s.t IS NULL THEN s.u END AS u, s.t FROM unnest(user_ids_, team_ids_, accounts_, key_ids_) AS s(u, t, a, k)
			WHERE s.a IS NULL AND s.k = ANY(live_)
		) n
		WHERE (n.t IS NOT NULL AND EXISTS (SELECT 1 FROM teams x WHERE x.id = n.t)) OR (n.t IS NULL AND EXISTS (SELECT 1 FROM users x WHERE x.id = n.u))
		ORDER BY coalesce(n.t, n.u)
		ON CONFLICT DO NOTHING;
		SELECT array_agg(CASE WHEN s.t IS NOT NULL THEN (SELECT a.id FROM user_credits a WHERE a.team_id = s.t)
			ELSE (SELECT a.id FROM user_credits a WHERE a.user_id = s.u) END ORDER BY s.o)
		INTO accounts_ FROM unnest(user_ids_, team_ids_) WITH ORDINALITY AS s(u, t, o);
	END IF;
	SELECT coalesce(array_agg(l.id ORDER BY l.id), '{}'), coalesce(array_agg(l.balance ORDER BY l.id), '{}'), coalesce(array_agg(l.held ORDER BY l.id), '{}')
	INTO acct_ids_, acct_balance_, acct_held_
	FROM (SELECT a.id, a.balance, a.held FROM user_credits a WHERE a.id = ANY(accounts_) ORDER BY a.id FOR UPDATE) l;
	-- Expiries due, read under the lock, are settled first. Expired grants under open holds stay until the
	-- holds settle (a capture or release below can make their credits leave).
	SELECT coalesce(array_agg(tally_due(x.id, x.b, x.h) ORDER BY x.o), '{}')
	INTO acct_due_ FROM unnest(acct_ids_, acct_balance_, acct_held_) WITH ORDINALITY AS x(id, b, h, o);
	FOR a IN 1..coalesce(array_length(acct_ids_, 1), 0) LOOP
		CONTINUE WHEN NOT acct_due_[a];
		SELECT s.balance, s.held INTO settled_balance_, settled_held_ FROM tally_settle(acct_ids_[a]) s;
		acct_balance_[a] := settled_balance_; acct_held_[a] := settled_held_;
	END LOOP;
	SELECT coalesce(array_agg(EXISTS (SELECT 1 FROM credit_grants g WHERE g.account_id = x.id AND g.remaining > 0 AND g.expires_at <= now()) ORDER BY x.o), '{}')
	INTO acct_expired_left_ FROM unnest(acct_ids_) WITH ORDINALITY AS x(id, o);
	acct_burn_ := array_fill(0::bigint, ARRAY[coalesce(array_length(acct_ids_, 1), 0)]);
	acct_changed_ := array_fill(false, ARRAY[coalesce(array_length(acct_ids_, 1), 0)]);
	acct_expire_ := acct_changed_;

	-- The holds that captures and releases name, locked in id order (after the accounts, as everywhere).
	SELECT coalesce(array_agg(h.id ORDER BY h.id), '{}'), coalesce(array_agg(h.account_id ORDER BY h.id), '{}'),
		coalesce(array_agg(h.api_key_id ORDER BY h.id), '{}'), coalesce(array_agg(h.amount ORDER BY h.id), '{}'),
		coalesce(array_agg(h.description ORDER BY h.id), '{}'), coalesce(array_agg(h.expires_at ORDER BY h.id), '{}'),
		coalesce(array_agg(h.status ORDER BY h.id), '{}')
	INTO h_ids_, h_accounts_, h_keys_, h_amounts_, h_descriptions_, h_expires_, h_status_
	FROM (SELECT h.* FROM credit_holds h WHERE h.id = ANY(hold_refs_) ORDER BY h.id FOR UPDATE) h;

	-- Every key the batch may charge: the live keys, and the keys that placed the holds named (a capture is
	-- charged to the key that placed the hold). Their allowance rows are locked in id order, then read; a key
	-- without one has no limit and gets one below.
	PERFORM 1 FROM (SELECT c.api_key_id FROM api_key_credits c WHERE c.api_key_id = ANY(live_ || h_keys_) ORDER BY c.api_key_id FOR UPDATE) c;
	SELECT coalesce(array_agg(k.id ORDER BY k.id), '{}'), coalesce(array_agg(k.user_id ORDER BY k.id), '{}'),
		coalesce(array_agg(k.team_id ORDER BY k.id), '{}'), coalesce(array_agg(c.api_key_id IS NOT NULL ORDER BY k.id), '{}'),
		coalesce(array_agg(c.credit_limit ORDER BY k.id), '{}'), coalesce(array_agg(coalesce(c.used, 0) ORDER BY k.id), '{}'),
		coalesce(array_agg(coalesce(c.held, 0) ORDER BY k.id), '{}')
	INTO k_ids_, k_users_, k_teams_, k_rows_, k_limits_, k_used_, k_held_
	FROM api_keys k LEFT JOIN api_key_credits c ON c.api_key_id = k.id
	WHERE k.id = ANY(live_ || h_keys_);
	k_dused_ := array_fill(0::bigint, ARRAY[coalesce(array_length(k_ids_, 1), 0)]);
	k_dheld_ := k_dused_;

	-- Decide, in arrival order.
	FOR i IN 1..n_ LOOP
		-- Answered from its Idempotency-Key.
		CONTINUE WHEN outcomes_[i] IS NOT NULL;
		IF NOT (key_ids_[i] = ANY(live_)) THEN outcomes_[i] := 'revoked'; CONTINUE; END IF;
		a := array_position(acct_ids_, accounts_[i]);
		-- A live key's owner always exists, so its account does too (created above); if not, it went meanwhile.
		IF a IS NULL THEN outcomes_[i] := 'revoked'; CONTINUE; END IF;
		IF acct_expire_[a] THEN outcomes_[i] := 'again'; CONTINUE; END IF;
		IF ops_[i] IN ('consume', 'hold') THEN
			avail_[i] := acct_balance_[a] - acct_held_[a];
			after_[i] := acct_balance_[a]; held_after_[i] := acct_held_[a];
			IF avail_[i] < amounts_[i] THEN outcomes_[i] := 'insufficient-credits'; CONTINUE; END IF;
			k := array_position(k_ids_, key_ids_[i]);
			IF k_limits_[k] IS NOT NULL AND k_used_[k] + k_dused_[k] + k_held_[k] + k_dheld_[k] + amounts_[i] > k_limits_[k] THEN
				outcomes_[i] := 'key-limit-exceeded';
				limit_[i] := k_limits_[k]; used_[i] := k_used_[k] + k_dused_[k]; kheld_[i] := k_held_[k] + k_dheld_[k];
				CONTINUE;
			END IF;
			IF ops_[i] = 'consume' THEN
				k_dused_[k] := k_dused_[k] + amounts_[i];
				acct_balance_[a] := acct_balance_[a] - amounts_[i];
				acct_burn_[a] := acct_burn_[a] + amounts_[i];
			ELSE
				k_dheld_[k] := k_dheld_[k] + amounts_[i];
				acct_held_[a] := acct_held_[a] + amounts_[i];
				hold_ids_[i] := gen_random_uuid();
				hold_amounts_[i] := amounts_[i];
				expires_[i] := now() + make_interval(secs => ttls_[i]);
			END IF;
		ELSE
			-- capture or release: an open hold of this account.
			h := array_position(h_ids_, hold_refs_[i]);
			-- Only the key that placed a hold settles it (an owner's or admin's session passes that key).
			IF h IS NULL OR h_accounts_[h] <> accounts_[i] OR h_keys_[h] <> key_ids_[i] THEN outcomes_[i] := 'hold-not-found'; CONTINUE; END IF;
			hold_ids_[i] := h_ids_[h]; hold_amounts_[i] := h_amounts_[h]; expires_[i] := h_expires_[h];
			IF h_status_[h] <> 'open' THEN outcomes_[i] := 'hold-' || h_status_[h]; CONTINUE; END IF;
			captured_[i] := CASE WHEN ops_[i] = 'capture' THEN coalesce(amounts_[i], h_amounts_[h]) ELSE 0 END;
			IF captured_[i] > h_amounts_[h] THEN outcomes_[i] := 'capture-exceeds-hold'; CONTINUE; END IF;
			k := array_position(k_ids_, h_keys_[h]);
			k_dused_[k] := k_dused_[k] + captured_[i];
			k_dheld_[k] := k_dheld_[k] - h_amounts_[h];
			acct_balance_[a] := acct_balance_[a] - captured_[i];
			acct_held_[a] := acct_held_[a] - h_amounts_[h];
			acct_burn_[a] := acct_burn_[a] + captured_[i];
			h_status_[h] := CASE WHEN ops_[i] = 'capture' THEN 'captured' ELSE 'released' END;
			-- Credits of an expired grant that this hold kept now leave, at the end of the batch; until then
			-- nothing else is decided on this account.
			IF acct_expired_left_[a] AND acct_balance_[a] > acct_held_[a] THEN acct_expire_[a] := true; END IF;
		END IF;
		acct_changed_[a] := true;
		after_[i] := acct_balance_[a]; held_after_[i] := acct_held_[a];
		avail_[i] := acct_balance_[a] - acct_held_[a];
		outcomes_[i] := 'ok';
	END LOOP;

	IF 'ok' = ANY(outcomes_) THEN

	-- The keys' allowances: rows that exist are updated (a capture or release lowers `held`), the others are
	-- made with what this batch added.
	UPDATE api_key_credits c SET used = c.used + v.du, held = c.held + v.dh
	FROM unnest(k_ids_, k_rows_, k_dused_, k_dheld_) AS v(k, r, du, dh) WHERE c.api_key_id = v.k AND v.r AND (v.du <> 0 OR v.dh <> 0);
	INSERT INTO api_key_credits AS c (api_key_id, user_id, used, held)
	SELECT v.k, v.u, v.du, v.dh FROM unnest(k_ids_, k_users_, k_rows_, k_dused_, k_dheld_) AS v(k, u, r, du, dh) WHERE NOT v.r AND (v.du <> 0 OR v.dh <> 0)
	ON CONFLICT (api_key_id) DO UPDATE SET used = c.used + excluded.used, held = c.held + excluded.held;

	WITH totals AS (
		SELECT v.id AS account_id, v.spent FROM unnest(acct_ids_, acct_burn_) AS v(id, spent) WHERE v.spent > 0
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

	INSERT INTO credit_holds (id, account_id, api_key_id, amount, description, expires_at)
	SELECT s.hid, s.a, s.k, s.amount, s.d, s.ex
	FROM unnest(ops_, outcomes_, hold_ids_, accounts_, key_ids_, amounts_, descriptions_, expires_) AS s(op, outcome, hid, a, k, amount, d, ex)
	WHERE s.op = 'hold' AND s.outcome = 'ok';

	UPDATE credit_holds h SET status = CASE WHEN s.op = 'capture' THEN 'captured' ELSE 'released' END,
		captured = CASE WHEN s.op = 'capture' THEN s.cap END, settled_at = now()
	FROM unnest(ops_, outcomes_, hold_ids_, captured_) AS s(op, outcome, hid, cap)
	WHERE h.id = s.hid AND s.op IN ('capture', 'release') AND s.outcome = 'ok';

	-- The ledger: a row per spend and per capture. Within an account balance_after falls with each, so
	-- (account, balance_after) names each new row.
	WITH entries AS (
		SELECT s.o, s.a, s.b, s.op, s.amount, s.cap, s.hid, s.d, s.m, s.u, s.t, s.k, h.n
		FROM unnest(ops_, outcomes_, accounts_, after_, amounts_, captured_, hold_ids_, descriptions_, metadata_, user_ids_, team_ids_, key_ids_)
			WITH ORDINALITY AS s(op, outcome, a, b, amount, cap, hid, d, m, u, t, k, o)
		LEFT JOIN LATERAL (SELECT array_position(h_ids_, s.hid)) h(n) ON true
		WHERE s.outcome = 'ok' AND s.op IN ('consume', 'capture')
	), inserted AS (
		INSERT INTO credit_transactions (account_id, user_id, team_id, api_key_id, kind, amount, balance_after, description, metadata, hold_id)
		SELECT r.a,
			CASE WHEN r.op = 'consume' THEN r.u ELSE k_users_[array_position(k_ids_, h_keys_[r.n])] END,
			CASE WHEN r.op = 'consume' THEN r.t ELSE k_teams_[array_position(k_ids_, h_keys_[r.n])] END,
			CASE WHEN r.op = 'consume' THEN r.k ELSE h_keys_[r.n] END,
			r.op, CASE WHEN r.op = 'consume' THEN -r.amount ELSE -r.cap END, r.b,
			CASE WHEN r.op = 'consume' THEN r.d ELSE h_descriptions_[r.n] END,
			CASE WHEN r.op = 'consume' THEN r.m END,
			CASE WHEN r.op = 'capture' THEN r.hid END
		FROM entries r ORDER BY r.o
		RETURNING id, account_id, balance_after
	)
	SELECT array_agg(ins.id ORDER BY s.o) INTO tx_
	FROM unnest(ops_, accounts_, after_, outcomes_) WITH ORDINALITY AS s(op, a, b, outcome, o)
	LEFT JOIN inserted ins ON s.outcome = 'ok' AND s.op IN ('consume', 'capture') AND ins.account_id = s.a AND ins.balance_after = s.b;

	-- Expired grants whose credits a capture or release unheld: they leave now, down to what holds reserve.
	FOR a IN 1..coalesce(array_length(acct_ids_, 1), 0) LOOP
		CONTINUE WHEN NOT acct_expire_[a];
		acct_balance_[a] := tally_expire_grants(acct_ids_[a], acct_balance_[a], acct_held_[a], 'grant expired');
		-- The operation that unheld them answers the balance after.
		FOR i IN 1..n_ LOOP
			IF accounts_[i] = acct_ids_[a] AND outcomes_[i] = 'ok' AND ops_[i] IN ('capture', 'release') THEN
				after_[i] := acct_balance_[a]; avail_[i] := acct_balance_[a] - acct_held_[a];
			END IF;
		END LOOP;
	END LOOP;

	UPDATE user_credits a SET balance = v.b, held = v.h, updated_at = now()
	FROM unnest(acct_ids_, acct_balance_, acct_held_, acct_changed_) AS v(id, b, h, changed) WHERE a.id = v.id AND v.changed;
	END IF;

	-- What each Idempotency-Key operation decided is kept (what the server would not keep is not: a revoked key,
	-- an operation decided in the next batch); one repeating a key earlier in the batch answers the same.
	FOR i IN 1..n_ LOOP
		CONTINUE WHEN claims_[i] IS NULL;
		IF claim_first_[i] IS NULL THEN
			CONTINUE WHEN outcomes_[i] IN ('replay', 'again', 'revoked') OR outcomes_[i] LIKE 'idempotency-%';
			kept_ := jsonb_build_object('outcome', outcomes_[i], 'transaction_id', tx_[i], 'balance', after_[i], 'held', held_after_[i],
				'available', avail_[i], 'key_limit', limit_[i], 'key_used', used_[i], 'key_held', kheld_[i], 'hold_id', hold_ids_[i],
				'hold_amount', hold_amounts_[i], 'captured', captured_[i], 'expires_at', expires_[i]);
			INSERT INTO idempotency_keys AS k (scope, key, request_hash, method, path, outcome)
			VALUES (claims_[i]->>'scope', claims_[i]->>'key', claims_[i]->>'hash', claims_[i]->>'method', claims_[i]->>'path', kept_)
			ON CONFLICT (scope, key) DO UPDATE SET request_hash = excluded.request_hash, method = excluded.method, path = excluded.path,
				status_code = NULL, content_type = NULL, response_body = NULL, outcome = excluded.outcome, created_at = now();
			replay_[i] := kept_;
		ELSIF outcomes_[i] = 'replay' THEN
			j := claim_first_[i];
			IF replay_[j] IS NULL THEN
				-- The first was not decided here (in progress, answered already, again): this one is told the same.
				outcomes_[i] := outcomes_[j]; replay_[i] := NULL;
			ELSE
				replay_[i] := replay_[j];
			END IF;
		END IF;
	END LOOP;
	FOR i IN 1..n_ LOOP
		CONTINUE WHEN outcomes_[i] <> 'replay' OR replay_[i] IS NULL;
		outcomes_[i] := replay_[i]->>'outcome'; replayed_[i] := true;
		tx_[i] := (replay_[i]->>'transaction_id')::bigint; after_[i] := (replay_[i]->>'balance')::bigint;
		held_after_[i] := (replay_[i]->>'held')::bigint; avail_[i] := (replay_[i]->>'available')::bigint;
		limit_[i] := (replay_[i]->>'key_limit')::bigint; used_[i] := (replay_[i]->>'key_used')::bigint;
		kheld_[i] := (replay_[i]->>'key_held')::bigint; hold_ids_[i] := (replay_[i]->>'hold_id')::uuid;
		hold_amounts_[i] := (replay_[i]->>'hold_amount')::bigint; captured_[i] := (replay_[i]->>'captured')::bigint;
		expires_[i] := (replay_[i]->>'expires_at')::timestamptz;
	END LOOP;

	RETURN QUERY SELECT (s.o - 1)::integer, s.outcome, s.tx, s.b, s.hd, s.av, s.lim, s.used, s.kh, s.hid, s.ha, s.cap, s.ex, s.r
	FROM unnest(outcomes_, tx_, after_, held_after_, avail_, limit_, used_, kheld_, hold_ids_, hold_amounts_, captured_, expires_, replayed_)
		WITH ORDINALITY AS s(outcome, tx, b, hd, av, lim, used, kh, hid, ha, cap, ex, r, o);
END
$$;
--> statement-breakpoint
DROP FUNCTION IF EXISTS "tally_balance_changed"(uuid, bigint, bigint);
--> statement-breakpoint
DROP FUNCTION IF EXISTS "tally_alert_threshold"(uuid, bigint, integer);
--> statement-breakpoint
DROP FUNCTION IF EXISTS "tally_emit"(uuid, text, jsonb);
--> statement-breakpoint
ALTER TABLE "credit_grants" DROP COLUMN IF EXISTS "expiring_notified_at";
--> statement-breakpoint
ALTER TABLE "user_credits" DROP COLUMN IF EXISTS "depleted";
--> statement-breakpoint
ALTER TABLE "user_credits" DROP COLUMN IF EXISTS "event_sequence";
--> statement-breakpoint
DROP TABLE IF EXISTS "balance_alerts";
--> statement-breakpoint
DROP TABLE IF EXISTS "webhook_attempts";
--> statement-breakpoint
DROP TABLE IF EXISTS "webhook_deliveries";
--> statement-breakpoint
DROP TABLE IF EXISTS "webhook_events";
--> statement-breakpoint
DROP TABLE IF EXISTS "webhook_endpoints";
