ALTER TABLE "members" ADD CONSTRAINT "members_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "accounts"("id") ON DELETE cascade;
CREATE INDEX IF NOT EXISTS "members_account_idx" ON "members" ("account_id");
/* a trailing comment; with a semicolon */
