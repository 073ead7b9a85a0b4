DROP TRIGGER accounts_touch ON accounts;
