-- A file someone saved here by hand; the journal does not name it, so Drizzle never runs it.
DROP TABLE "users" CASCADE;
