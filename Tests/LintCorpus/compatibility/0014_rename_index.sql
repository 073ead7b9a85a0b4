ALTER INDEX accounts_email_idx RENAME TO accounts_email_lookup;
