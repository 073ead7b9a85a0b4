ALTER TYPE account_status ADD VALUE 'suspended';
