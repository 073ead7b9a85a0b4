CREATE OR REPLACE FUNCTION "tally_consume"("spends" jsonb)
RETURNS TABLE ("idx" integer, "outcome" text, "transaction_id" bigint, "balance" bigint, "available" bigint, "key_limit" bigint, "key_used" bigint, "key_held" bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
-- Spends, in order, a batch of [{key_id, user_id, team_id, amount, description, metadata}], one statement
-- for the whole batch (group commit). Per spend: lock the account, refuse when available credits or the
-- key's allowance cannot cover it (nothing written), else charge the key, burn grants by priority, soonest
-- expiry, age, and write the balance and a `consume` ledger entry. Outcome 'settle' means the account is
-- new or has expiries due: the caller settles it (Ledger.lockAccount) and retries that spend; 'revoked'
-- that the key was revoked (or deleted) since the caller authenticated it.
DECLARE
	spend jsonb;
	n_ integer := -1;
	amount_ bigint;
	key_id_ uuid;
	user_id_ uuid;
	team_id_ uuid;
	account_ uuid;
	balance_ bigint;
	held_ bigint;
	taken_ bigint;
BEGIN
	FOR spend IN SELECT value FROM jsonb_array_elements(spends) LOOP
		n_ := n_ + 1;
		idx := n_; outcome := NULL; transaction_id := NULL; balance := NULL; available := NULL;
		key_limit := NULL; key_used := NULL; key_held := NULL;
		amount_ := (spend->>'amount')::bigint;
		key_id_ := (spend->>'key_id')::uuid;
		user_id_ := (spend->>'user_id')::uuid;
		team_id_ := (spend->>'team_id')::uuid;
		account_ := NULL;
		-- The caller may know the key from a cache: whether it is still live is decided here, at spend time.
		IF NOT EXISTS (SELECT 1 FROM api_keys k WHERE k.id = key_id_ AND k.revoked_at IS NULL) THEN
			outcome := 'revoked';
			RETURN NEXT;
			CONTINUE;
		END IF;
		IF team_id_ IS NOT NULL THEN
			SELECT a.id, a.balance, a.held INTO account_, balance_, held_ FROM user_credits a WHERE a.team_id = team_id_ FOR UPDATE;
		ELSE
			SELECT a.id, a.balance, a.held INTO account_, balance_, held_ FROM user_credits a WHERE a.user_id = user_id_ FOR UPDATE;
		END IF;
		-- Expired grants under open holds stay until the holds settle, so they are only due when credits are unheld.
		IF account_ IS NULL
			OR EXISTS (SELECT 1 FROM credit_holds h WHERE h.account_id = account_ AND h.status = 'open' AND h.expires_at <= now())
			OR (balance_ > held_ AND EXISTS (SELECT 1 FROM credit_grants g WHERE g.account_id = account_ AND g.remaining > 0 AND g.expires_at <= now())) THEN
			outcome := 'settle';
			RETURN NEXT;
			CONTINUE;
		END IF;
		balance := balance_;
		available := balance_ - held_;
		IF balance_ - held_ < amount_ THEN
			outcome := 'insufficient-credits';
			RETURN NEXT;
			CONTINUE;
		END IF;
		UPDATE api_key_credits c SET used = c.used + amount_
		WHERE c.api_key_id = key_id_ AND (c.credit_limit IS NULL OR c.used + c.held + amount_ <= c.credit_limit);
		IF NOT FOUND THEN
			SELECT c.credit_limit, c.used, c.held INTO key_limit, key_used, key_held FROM api_key_credits c WHERE c.api_key_id = key_id_;
			IF FOUND THEN
				outcome := 'key-limit-exceeded';
				RETURN NEXT;
				CONTINUE;
			END IF;
			INSERT INTO api_key_credits (api_key_id, user_id, used) VALUES (key_id_, user_id_, amount_);
		END IF;
		WITH ordered AS (
			SELECT g.id, g.remaining,
				(sum(g.remaining) OVER (ORDER BY g.priority, g.expires_at NULLS LAST, g.created_at, g.id))::bigint - g.remaining AS before
			FROM credit_grants g WHERE g.account_id = account_ AND g.remaining > 0
		), chosen AS (
			SELECT o.id, LEAST(o.remaining, amount_ - o.before) AS take FROM ordered o WHERE o.before < amount_
		), burned AS (
			UPDATE credit_grants g SET remaining = g.remaining - c.take FROM chosen c WHERE g.id = c.id RETURNING c.take
		)
		SELECT COALESCE(sum(b.take), 0)::bigint INTO taken_ FROM burned b;
		IF taken_ <> amount_ THEN
			RAISE EXCEPTION 'the grants of account % cover % of a spend of %; run tally db audit', account_, taken_, amount_;
		END IF;
		balance_ := balance_ - amount_;
		UPDATE user_credits a SET balance = balance_, updated_at = now() WHERE a.id = account_;
		INSERT INTO credit_transactions (account_id, user_id, team_id, api_key_id, kind, amount, balance_after, description, metadata)
		VALUES (account_, user_id_, team_id_, key_id_, 'consume', -amount_, balance_, spend->>'description', spend->'metadata')
		RETURNING id INTO transaction_id;
		outcome := 'ok';
		balance := balance_;
		available := balance_ - held_;
		RETURN NEXT;
	END LOOP;
END
$$;
