-- A user's personal data can be erased while the ledger keeps every row: the account is closed with ledger
-- entries (what was left expires, "account closed"), and the user row stays, anonymous, for the ledger and
-- the audit log to point at. erased_at says when.
ALTER TABLE "users" ADD COLUMN IF NOT EXISTS "erased_at" timestamp with time zone;
