-- The database the hazards run against: what a production database of a credits product holds.
-- LintCorpusTests loads it (the DDL, and with rows for the filled case) before planning hazards/.
CREATE TYPE account_status AS ENUM ('active', 'closed');
CREATE DOMAIN credit_amount AS bigint;
CREATE TABLE teams (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE accounts (
    id bigint PRIMARY KEY,
    team_id bigint,
    email varchar(100),
    name text,
    score integer,
    amount credit_amount,
    status account_status NOT NULL DEFAULT 'active',
    note text NOT NULL DEFAULT '',
    legacy text,
    created_at timestamptz NOT NULL DEFAULT now(),
    email_lower text GENERATED ALWAYS AS (lower(email)) STORED,
    CONSTRAINT accounts_score_positive CHECK (score >= 0)
);
CREATE INDEX accounts_email_idx ON accounts (email);
CREATE TABLE audit_log (id bigint NOT NULL, account_id bigint, message text);
CREATE TABLE events (id bigint NOT NULL, at timestamptz NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE archived_accounts () INHERITS (accounts);
CREATE VIEW active_accounts AS SELECT id, email FROM accounts WHERE status = 'active';
CREATE SEQUENCE invoice_numbers;
CREATE SCHEMA reporting;
CREATE TYPE money_pair AS (amount bigint, currency text);
CREATE FUNCTION account_score(account bigint) RETURNS integer LANGUAGE sql AS 'SELECT score FROM accounts WHERE id = account';
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
CREATE TRIGGER accounts_touch BEFORE UPDATE ON accounts FOR EACH ROW EXECUTE FUNCTION touch();
CREATE POLICY accounts_own ON accounts USING (true);
