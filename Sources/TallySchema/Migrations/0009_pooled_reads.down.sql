DROP FUNCTION IF EXISTS "tally_committed_balance"(uuid, uuid, uuid);
