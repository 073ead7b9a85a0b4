DROP FUNCTION IF EXISTS "tally_consume"(jsonb);
