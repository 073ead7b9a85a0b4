ALTER TYPE account_status ADD VALUE 'frozen' AFTER 'active';
