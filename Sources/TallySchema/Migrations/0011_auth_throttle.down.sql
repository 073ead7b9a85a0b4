DROP TABLE IF EXISTS "auth_throttle";
