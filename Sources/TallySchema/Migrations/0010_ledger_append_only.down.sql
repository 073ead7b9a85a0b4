DROP TRIGGER IF EXISTS "credit_transactions_no_truncate" ON "credit_transactions";
--> statement-breakpoint
DROP TRIGGER IF EXISTS "credit_transactions_append_only" ON "credit_transactions";
--> statement-breakpoint
DROP FUNCTION IF EXISTS "tally_ledger_append_only"();
