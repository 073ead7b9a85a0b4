-- The ledger is append-only, kept by the database itself: UPDATE, DELETE and TRUNCATE of credit_transactions
-- are refused for every role, superusers included (the triggers are ENABLE ALWAYS, so session_replication_role
-- does not skip them either). A user or team whose account has ledger rows cannot be deleted (the cascade
-- reaches the ledger and is refused); erase a person's data instead and keep the rows.
-- One way out: `tally db orphans --clean` archives each row in the statement that deletes it, in a transaction
-- that sets tally.archive_batch; the trigger lets such a DELETE through only for a member of the table's owner.
CREATE OR REPLACE FUNCTION "tally_ledger_append_only"() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE'
     AND coalesce(current_setting('tally.archive_batch', true), '') <> ''
     AND pg_has_role(current_user, (SELECT c.relowner FROM pg_class c WHERE c.oid = TG_RELID), 'MEMBER') THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION '% on %: the ledger is append-only', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege',
          HINT = 'Correct a balance with a new entry (a grant or an adjustment); rows of accounts that no longer exist leave through tally db orphans --clean, which archives them first.';
END
$$;
--> statement-breakpoint
CREATE TRIGGER "credit_transactions_append_only" BEFORE UPDATE OR DELETE ON "credit_transactions"
  FOR EACH ROW EXECUTE FUNCTION "tally_ledger_append_only"();
--> statement-breakpoint
ALTER TABLE "credit_transactions" ENABLE ALWAYS TRIGGER "credit_transactions_append_only";
--> statement-breakpoint
CREATE TRIGGER "credit_transactions_no_truncate" BEFORE TRUNCATE ON "credit_transactions"
  FOR EACH STATEMENT EXECUTE FUNCTION "tally_ledger_append_only"();
--> statement-breakpoint
ALTER TABLE "credit_transactions" ENABLE ALWAYS TRIGGER "credit_transactions_no_truncate";
