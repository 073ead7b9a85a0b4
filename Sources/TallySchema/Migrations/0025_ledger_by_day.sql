-- The burn-down (the portal's chart and GET /v1/credits/burndown) reads an account's ledger entries of the last
-- 30 days, and the spend per key by day: this index finds them without reading the account's older history.
-- Built CONCURRENTLY, so spends go on meanwhile.
CREATE INDEX CONCURRENTLY IF NOT EXISTS "credit_transactions_account_created_idx" ON "credit_transactions" USING btree ("account_id", "created_at");
