CREATE TABLE "people" (
	"id" serial PRIMARY KEY NOT NULL,
	"team_id" integer
);
--> statement-breakpoint
INSERT INTO "people" ("team_id") VALUES (1), (NULL);
