-- tally_balance_changed and tally_settle as 0023_webhooks_and_alerts made them; the top-up and recurring grant
-- tables and functions go (grants made by them stay in credit_grants and the ledger).
CREATE OR REPLACE FUNCTION "tally_balance_changed"("p_account" uuid, "p_available" bigint, "p_entry" bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	al record;
	threshold_ bigint;
	depleted_ boolean;
BEGIN
	FOR al IN SELECT b.id, b.threshold, b.percent, b.armed FROM balance_alerts b WHERE b.account_id = p_account ORDER BY b.id FOR UPDATE LOOP
		threshold_ := tally_alert_threshold(p_account, al.threshold, al.percent);
		IF al.armed AND p_available < threshold_ THEN
			UPDATE balance_alerts b SET armed = false WHERE b.id = al.id;
			PERFORM tally_emit(p_account, 'balance.threshold_crossed', jsonb_build_object(
				'alert_id', al.id, 'threshold', threshold_, 'percent', al.percent, 'available', p_available, 'transaction_id', p_entry));
		ELSIF NOT al.armed AND p_available >= threshold_ THEN
			UPDATE balance_alerts b SET armed = true WHERE b.id = al.id;
			PERFORM tally_emit(p_account, 'balance.recovered', jsonb_build_object(
				'alert_id', al.id, 'threshold', threshold_, 'percent', al.percent, 'available', p_available, 'transaction_id', p_entry));
		END IF;
	END LOOP;
	SELECT a.depleted INTO depleted_ FROM user_credits a WHERE a.id = p_account;
	IF NOT depleted_ AND p_available <= 0 THEN
		UPDATE user_credits a SET depleted = true WHERE a.id = p_account;
		PERFORM tally_emit(p_account, 'balance.depleted', jsonb_build_object('available', p_available, 'transaction_id', p_entry));
	ELSIF depleted_ AND p_available > 0 THEN
		UPDATE user_credits a SET depleted = false WHERE a.id = p_account;
	END IF;
END
$$;
--> statement-breakpoint
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
		-- Expiry can cross a balance alert: decided here, with the newest ledger entry as the crossing's.
		PERFORM tally_balance_changed(p_account, balance_ - held_,
			(SELECT max(t.id) FROM credit_transactions t WHERE t.account_id = p_account));
	END IF;
	RETURN QUERY SELECT balance_, held_;
END
$$;
--> statement-breakpoint
DROP FUNCTION IF EXISTS "tally_issue_recurring"(uuid, timestamptz);
--> statement-breakpoint
DROP FUNCTION IF EXISTS "tally_period_start"(timestamptz, text, integer);
--> statement-breakpoint
DROP FUNCTION IF EXISTS "tally_current_period"(timestamptz, text, timestamptz);
--> statement-breakpoint
DROP FUNCTION IF EXISTS "tally_grant_credits"(uuid, bigint, integer, timestamptz, text, uuid, text);
--> statement-breakpoint
DROP TABLE IF EXISTS "recurring_grant_periods";
--> statement-breakpoint
DROP TABLE IF EXISTS "recurring_grants";
--> statement-breakpoint
DROP TABLE IF EXISTS "topups";
--> statement-breakpoint
DROP TABLE IF EXISTS "topup_rules";
