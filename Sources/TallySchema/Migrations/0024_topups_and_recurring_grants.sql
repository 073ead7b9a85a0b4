-- Automatic top-ups and recurring grants. A top-up rule is decided where balances change, with the balance
-- alerts (tally_balance_changed, under the account's lock, in the change's own transaction): once per crossing
-- below its line, keyed by the ledger entry that crossed it, at most max_per_day a day; it asks the product to
-- charge (topup.requested) or grants at once. A recurring grant is issued by whichever server's maintenance gets
-- there first (tally_issue_recurring: the schedule row locked FOR UPDATE SKIP LOCKED, a row per period), every
-- period once, missed periods caught up. Grants are written by one function, tally_grant_credits.
CREATE TABLE IF NOT EXISTS "topup_rules" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"account_id" uuid NOT NULL,
	"below" bigint NOT NULL,
	"amount" bigint,
	"top_up_to" bigint,
	"action" text NOT NULL,
	"max_per_day" integer NOT NULL,
	"expires_in_seconds" bigint,
	"description" text NOT NULL,
	"armed" boolean DEFAULT true NOT NULL,
	"capped_notified" boolean DEFAULT false NOT NULL,
	"created_by_name" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "topup_rules_one_amount_check" CHECK (("amount" IS NULL) <> ("top_up_to" IS NULL)),
	CONSTRAINT "topup_rules_range_check" CHECK ("below" >= 1 AND ("amount" > 0 OR "top_up_to" >= "below") AND "max_per_day" BETWEEN 1 AND 1000
		AND ("expires_in_seconds" IS NULL OR "expires_in_seconds" > 0)),
	CONSTRAINT "topup_rules_action_check" CHECK ("action" IN ('request', 'grant'))
);
--> statement-breakpoint
ALTER TABLE "topup_rules" ADD CONSTRAINT "topup_rules_account_id_user_credits_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."user_credits"("id") ON DELETE cascade ON UPDATE no action;
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "topup_rules_account_id_idx" ON "topup_rules" USING btree ("account_id");
--> statement-breakpoint
-- What each rule did: one row per crossing (the ledger entry that crossed is the key, not a time window).
CREATE TABLE IF NOT EXISTS "topups" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"rule_id" uuid,
	"account_id" uuid NOT NULL,
	"transaction_id" bigint,
	"action" text NOT NULL,
	"amount" bigint NOT NULL,
	"available" bigint NOT NULL,
	"grant_id" uuid,
	"event_id" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "topups_rule_crossing_unique" UNIQUE ("rule_id", "transaction_id")
);
--> statement-breakpoint
ALTER TABLE "topups" ADD CONSTRAINT "topups_rule_id_topup_rules_id_fk" FOREIGN KEY ("rule_id") REFERENCES "public"."topup_rules"("id") ON DELETE set null ON UPDATE no action;
--> statement-breakpoint
ALTER TABLE "topups" ADD CONSTRAINT "topups_account_id_user_credits_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."user_credits"("id") ON DELETE cascade ON UPDATE no action;
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "topups_account_idx" ON "topups" USING btree ("account_id", "created_at");
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "topups_rule_idx" ON "topups" USING btree ("rule_id", "created_at");
--> statement-breakpoint
CREATE TABLE IF NOT EXISTS "recurring_grants" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"account_id" uuid NOT NULL,
	"amount" bigint NOT NULL,
	"every" text NOT NULL,
	"anchor" timestamp with time zone NOT NULL,
	"expires_in_seconds" bigint,
	"rollover_max" bigint,
	"rollover_min" bigint DEFAULT 0 NOT NULL,
	"priority" integer DEFAULT 0 NOT NULL,
	"description" text NOT NULL,
	"next_period" integer DEFAULT 0 NOT NULL,
	"next_at" timestamp with time zone NOT NULL,
	"ended_at" timestamp with time zone,
	"created_by_name" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "recurring_grants_every_check" CHECK ("every" IN ('day', 'week', 'month')),
	CONSTRAINT "recurring_grants_range_check" CHECK ("amount" > 0 AND ("expires_in_seconds" IS NULL OR "expires_in_seconds" > 0)
		AND ("rollover_max" IS NULL OR "rollover_max" >= 0) AND "rollover_min" >= 0 AND ("rollover_max" IS NULL OR "rollover_min" <= "rollover_max"))
);
--> statement-breakpoint
ALTER TABLE "recurring_grants" ADD CONSTRAINT "recurring_grants_account_id_user_credits_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."user_credits"("id") ON DELETE cascade ON UPDATE no action;
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "recurring_grants_account_id_idx" ON "recurring_grants" USING btree ("account_id");
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "recurring_grants_due_idx" ON "recurring_grants" USING btree ("next_at") WHERE "ended_at" IS NULL;
--> statement-breakpoint
-- A row per period of a schedule, once (the primary key): the grant it issued, or none when the period's grant
-- would have expired before it could be issued (a server was down that long); the credits of earlier periods
-- it kept (at least rollover_min: the grant made up the difference) and those the cap took.
CREATE TABLE IF NOT EXISTS "recurring_grant_periods" (
	"recurring_grant_id" uuid NOT NULL,
	"period" integer NOT NULL,
	"starts_at" timestamp with time zone NOT NULL,
	"grant_id" uuid,
	"rolled_over" bigint DEFAULT 0 NOT NULL,
	"forfeited" bigint DEFAULT 0 NOT NULL,
	"issued_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "recurring_grant_periods_pk" PRIMARY KEY ("recurring_grant_id", "period")
);
--> statement-breakpoint
ALTER TABLE "recurring_grant_periods" ADD CONSTRAINT "recurring_grant_periods_recurring_grant_id_recurring_grants_id_fk" FOREIGN KEY ("recurring_grant_id") REFERENCES "public"."recurring_grants"("id") ON DELETE cascade ON UPDATE no action;
--> statement-breakpoint
ALTER TABLE "recurring_grant_periods" ADD CONSTRAINT "recurring_grant_periods_grant_id_credit_grants_id_fk" FOREIGN KEY ("grant_id") REFERENCES "public"."credit_grants"("id") ON DELETE cascade ON UPDATE no action;
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "recurring_grant_periods_grant_id_idx" ON "recurring_grant_periods" USING btree ("grant_id");
--> statement-breakpoint
-- Adds a grant to an account: the grant, the account's balance and the ledger entry. The caller holds the
-- account's lock and then decides its alerts and top-ups (tally_balance_changed) with the balance returned. The
-- one place a grant is written: Ledger.grant, top-ups and recurring grants call it.
CREATE OR REPLACE FUNCTION "tally_grant_credits"("p_account" uuid, "p_amount" bigint, "p_priority" integer, "p_expires_at" timestamptz,
	"p_description" text, "p_granted_by" uuid, "p_request_id" text)
RETURNS TABLE ("grant_id" uuid, "transaction_id" bigint, "balance" bigint, "held" bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
	grant_ uuid;
	entry_ bigint;
	balance_ bigint;
	held_ bigint;
BEGIN
	INSERT INTO credit_grants (account_id, amount, remaining, priority, expires_at, description, granted_by, request_id)
	VALUES (p_account, p_amount, p_amount, p_priority, p_expires_at, p_description, p_granted_by, p_request_id) RETURNING id INTO grant_;
	UPDATE user_credits a SET balance = a.balance + p_amount, updated_at = now() WHERE a.id = p_account RETURNING a.balance, a.held INTO balance_, held_;
	INSERT INTO credit_transactions (account_id, kind, amount, balance_after, description, grant_id)
	VALUES (p_account, 'grant', p_amount, balance_, p_description, grant_) RETURNING id INTO entry_;
	RETURN QUERY SELECT grant_, entry_, balance_, held_;
END
$$;
--> statement-breakpoint
-- Decides an account's top-up rules, then its balance alerts, against its available credits now (the caller
-- holds the account's lock and has just changed them). Top-ups come first, so the alerts judge what the
-- transaction commits: a rule that grants at once can keep an alert from firing at all.
-- A rule fires when it is armed and the credits are below its line: at most once per crossing (it disarms, and
-- `topups` keys the crossing by its ledger entry), and at most max_per_day times in 24 hours (past that it stays
-- armed, tells topup.capped once, and fires at the first change after the day has room). `request` writes
-- topup.requested (the product charges its customer, then grants with the top-up's id as Idempotency-Key);
-- `grant` grants at once (topup.granted) and re-arms if that lifted the account back over the line. A disarmed
-- rule arms again when the credits are at or above its line.
-- Then the alerts, as before: an armed alert whose threshold is above the credits fires balance.threshold_crossed
-- and disarms; a disarmed one at or below them fires balance.recovered and arms again. Reaching zero fires
-- balance.depleted once, until credits come back. `p_entry`: the ledger entry that did it.
CREATE OR REPLACE FUNCTION "tally_balance_changed"("p_account" uuid, "p_available" bigint, "p_entry" bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	available_ bigint := p_available;
	r record;
	al record;
	threshold_ bigint;
	depleted_ boolean;
	amount_ bigint;
	topup_ uuid;
	event_ text;
	g record;
BEGIN
	FOR r IN SELECT t.* FROM topup_rules t WHERE t.account_id = p_account ORDER BY t.id FOR UPDATE LOOP
		IF NOT r.armed THEN
			IF available_ >= r.below THEN UPDATE topup_rules t SET armed = true, capped_notified = false WHERE t.id = r.id; END IF;
			CONTINUE;
		END IF;
		CONTINUE WHEN available_ >= r.below;
		IF (SELECT count(*) FROM topups x WHERE x.rule_id = r.id AND x.created_at > now() - interval '1 day') >= r.max_per_day THEN
			IF NOT r.capped_notified THEN
				UPDATE topup_rules t SET capped_notified = true WHERE t.id = r.id;
				PERFORM tally_emit(p_account, 'topup.capped', jsonb_build_object(
					'rule_id', r.id, 'max_per_day', r.max_per_day, 'below', r.below, 'available', available_, 'transaction_id', p_entry));
			END IF;
			CONTINUE;
		END IF;
		amount_ := coalesce(r.amount, r.top_up_to - available_);
		topup_ := NULL;
		INSERT INTO topups (rule_id, account_id, transaction_id, action, amount, available)
		VALUES (r.id, p_account, p_entry, r.action, amount_, available_)
		ON CONFLICT (rule_id, transaction_id) DO NOTHING RETURNING id INTO topup_;
		IF topup_ IS NULL THEN
			-- This crossing had its top-up already.
			UPDATE topup_rules t SET armed = false WHERE t.id = r.id;
			CONTINUE;
		END IF;
		IF r.action = 'grant' THEN
			SELECT * INTO g FROM tally_grant_credits(p_account, amount_, 0,
				CASE WHEN r.expires_in_seconds IS NOT NULL THEN now() + make_interval(secs => r.expires_in_seconds) END,
				r.description, NULL, NULL);
			available_ := g.balance - g.held;
			UPDATE topup_rules t SET armed = available_ >= r.below, capped_notified = false WHERE t.id = r.id;
			event_ := tally_emit(p_account, 'topup.granted', jsonb_build_object(
				'topup_id', topup_, 'rule_id', r.id, 'amount', amount_, 'below', r.below, 'grant_id', g.grant_id,
				'available', available_, 'transaction_id', p_entry, 'grant_transaction_id', g.transaction_id));
			UPDATE topups x SET grant_id = g.grant_id, event_id = event_ WHERE x.id = topup_;
		ELSE
			UPDATE topup_rules t SET armed = false, capped_notified = false WHERE t.id = r.id;
			event_ := tally_emit(p_account, 'topup.requested', jsonb_build_object(
				'topup_id', topup_, 'rule_id', r.id, 'amount', amount_, 'below', r.below, 'available', available_, 'transaction_id', p_entry));
			UPDATE topups x SET event_id = event_ WHERE x.id = topup_;
		END IF;
	END LOOP;

	FOR al IN SELECT b.id, b.threshold, b.percent, b.armed FROM balance_alerts b WHERE b.account_id = p_account ORDER BY b.id FOR UPDATE LOOP
		threshold_ := tally_alert_threshold(p_account, al.threshold, al.percent);
		IF al.armed AND available_ < threshold_ THEN
			UPDATE balance_alerts b SET armed = false WHERE b.id = al.id;
			PERFORM tally_emit(p_account, 'balance.threshold_crossed', jsonb_build_object(
				'alert_id', al.id, 'threshold', threshold_, 'percent', al.percent, 'available', available_, 'transaction_id', p_entry));
		ELSIF NOT al.armed AND available_ >= threshold_ THEN
			UPDATE balance_alerts b SET armed = true WHERE b.id = al.id;
			PERFORM tally_emit(p_account, 'balance.recovered', jsonb_build_object(
				'alert_id', al.id, 'threshold', threshold_, 'percent', al.percent, 'available', available_, 'transaction_id', p_entry));
		END IF;
	END LOOP;
	SELECT a.depleted INTO depleted_ FROM user_credits a WHERE a.id = p_account;
	IF NOT depleted_ AND available_ <= 0 THEN
		UPDATE user_credits a SET depleted = true WHERE a.id = p_account;
		PERFORM tally_emit(p_account, 'balance.depleted', jsonb_build_object('available', available_, 'transaction_id', p_entry));
	ELSIF depleted_ AND available_ > 0 THEN
		UPDATE user_credits a SET depleted = false WHERE a.id = p_account;
	END IF;
END
$$;
--> statement-breakpoint
-- As 0023 made it, but the balance it returns is read again after the alerts and top-ups: a top-up that grants
-- at once changes it, and the callers write what this returns.
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
		-- Expiry can cross a balance alert or a top-up rule: decided here, with the newest ledger entry as the crossing's.
		PERFORM tally_balance_changed(p_account, balance_ - held_,
			(SELECT max(t.id) FROM credit_transactions t WHERE t.account_id = p_account));
		SELECT a.balance, a.held INTO balance_, held_ FROM user_credits a WHERE a.id = p_account;
	END IF;
	RETURN QUERY SELECT balance_, held_;
END
$$;
--> statement-breakpoint
-- The start of a schedule's period `p_period` (0 is the anchor), counted from the anchor in UTC, so a monthly
-- schedule anchored on the 31st falls on the last day of shorter months and on the 31st again after them.
CREATE OR REPLACE FUNCTION "tally_period_start"("p_anchor" timestamptz, "p_every" text, "p_period" integer) RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
	SELECT ((p_anchor AT TIME ZONE 'UTC') + CASE p_every
		WHEN 'day' THEN make_interval(days => p_period)
		WHEN 'week' THEN make_interval(weeks => p_period)
		ELSE make_interval(months => p_period) END) AT TIME ZONE 'UTC'
$$;
--> statement-breakpoint
-- The period of a schedule that `p_now` falls in (0 before the anchor too): a new schedule starts there, so
-- periods before it was made are not issued.
CREATE OR REPLACE FUNCTION "tally_current_period"("p_anchor" timestamptz, "p_every" text, "p_now" timestamptz) RETURNS integer
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
	n_ integer := 0;
BEGIN
	WHILE tally_period_start(p_anchor, p_every, n_ + 1) <= p_now LOOP n_ := n_ + 1; END LOOP;
	RETURN n_;
END
$$;
--> statement-breakpoint
-- Issues what a recurring grant owes up to `p_now`: every period whose start has come and that has no row yet,
-- oldest first. The schedule is locked FOR UPDATE SKIP LOCKED (a server issuing it already is left to finish:
-- this returns 0), then its account (tally_settle). Before a period's grant, what is left of the schedule's
-- earlier grants is cut to rollover_max (the excess leaves as 'expire' entries, oldest grant first, never what
-- holds reserve), and the period's grant makes up what falls short of rollover_min (OpenMeter's min and max
-- rollover: what carries over is min(max, max(left, min))); a period whose grant would have expired by `p_now` is
-- recorded with no grant. Returns how many periods it recorded.
CREATE OR REPLACE FUNCTION "tally_issue_recurring"("p_schedule" uuid, "p_now" timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
	s record;
	balance_ bigint;
	held_ bigint;
	start_ timestamptz;
	expires_ timestamptz;
	carried_ bigint;
	excess_ bigint;
	take_ bigint;
	forfeited_ bigint;
	extra_ bigint;
	issued_ integer := 0;
	entry_ bigint;
	g record;
	old record;
BEGIN
	SELECT * INTO s FROM recurring_grants r WHERE r.id = p_schedule AND r.ended_at IS NULL AND r.next_at <= p_now FOR UPDATE SKIP LOCKED;
	IF NOT FOUND THEN RETURN 0; END IF;
	SELECT x.balance, x.held INTO balance_, held_ FROM tally_settle(s.account_id) x;
	WHILE s.next_at <= p_now LOOP
		start_ := s.next_at;
		forfeited_ := 0;
		carried_ := coalesce((SELECT sum(cg.remaining) FROM credit_grants cg JOIN recurring_grant_periods p ON p.grant_id = cg.id
			WHERE p.recurring_grant_id = s.id AND cg.remaining > 0 AND (cg.expires_at IS NULL OR cg.expires_at > start_)), 0);
		IF s.rollover_max IS NOT NULL AND carried_ > s.rollover_max THEN
			excess_ := LEAST(carried_ - s.rollover_max, balance_ - held_);
			FOR old IN SELECT cg.id, cg.remaining FROM credit_grants cg JOIN recurring_grant_periods p ON p.grant_id = cg.id
				WHERE p.recurring_grant_id = s.id AND cg.remaining > 0 AND (cg.expires_at IS NULL OR cg.expires_at > start_)
				ORDER BY p.period FOR UPDATE OF cg
			LOOP
				EXIT WHEN excess_ <= 0;
				take_ := LEAST(old.remaining, excess_);
				UPDATE credit_grants cg SET remaining = cg.remaining - take_ WHERE cg.id = old.id;
				balance_ := balance_ - take_;
				excess_ := excess_ - take_;
				forfeited_ := forfeited_ + take_;
				INSERT INTO credit_transactions (account_id, kind, amount, balance_after, description, grant_id)
				VALUES (s.account_id, 'expire', -take_, balance_, 'rollover cap of ' || s.rollover_max || ': ' || s.description, old.id)
				RETURNING id INTO entry_;
			END LOOP;
			UPDATE user_credits a SET balance = balance_, updated_at = now() WHERE a.id = s.account_id;
		END IF;
		expires_ := CASE WHEN s.expires_in_seconds IS NOT NULL THEN start_ + make_interval(secs => s.expires_in_seconds) END;
		IF expires_ IS NOT NULL AND expires_ <= p_now THEN
			INSERT INTO recurring_grant_periods (recurring_grant_id, period, starts_at, rolled_over, forfeited)
			VALUES (s.id, s.next_period, start_, carried_ - forfeited_, forfeited_);
		ELSE
			-- Period 0 has nothing to carry over, so nothing to make up.
			extra_ := CASE WHEN s.next_period > 0 THEN GREATEST(0, s.rollover_min - (carried_ - forfeited_)) ELSE 0 END;
			SELECT * INTO g FROM tally_grant_credits(s.account_id, s.amount + extra_, s.priority, expires_, s.description, NULL, NULL);
			balance_ := g.balance; held_ := g.held; entry_ := g.transaction_id;
			INSERT INTO recurring_grant_periods (recurring_grant_id, period, starts_at, grant_id, rolled_over, forfeited)
			VALUES (s.id, s.next_period, start_, g.grant_id, carried_ - forfeited_ + extra_, forfeited_);
		END IF;
		issued_ := issued_ + 1;
		s.next_period := s.next_period + 1;
		s.next_at := tally_period_start(s.anchor, s.every, s.next_period);
	END LOOP;
	UPDATE recurring_grants r SET next_period = s.next_period, next_at = s.next_at WHERE r.id = s.id;
	IF entry_ IS NOT NULL THEN
		PERFORM tally_balance_changed(s.account_id, balance_ - held_, entry_);
	END IF;
	RETURN issued_;
END
$$;
