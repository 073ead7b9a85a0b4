-- Failed logins and sign-ups, counted where a restart does not reset them: one row per (account, client
-- address), per client address, and per address for sign-ups, keyed by a SHA-256 so no email is stored in
-- the clear. `blocked_until` is when the next attempt may be tried; the maintenance service purges old rows.
CREATE TABLE IF NOT EXISTS "auth_throttle" (
	"key" text PRIMARY KEY NOT NULL,
	"failures" integer DEFAULT 0 NOT NULL,
	"blocked_until" timestamp with time zone,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
