ALTER TYPE "public"."role" ADD VALUE 'owner';--> statement-breakpoint
ALTER TABLE "posts" ADD COLUMN "editor_id" integer;--> statement-breakpoint
UPDATE "posts" SET "editor_id" = "author_id";--> statement-breakpoint
DO $$ BEGIN
 ALTER TABLE "posts" ADD CONSTRAINT "posts_editor_id_users_id_fk" FOREIGN KEY ("editor_id") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;
EXCEPTION
 WHEN duplicate_object THEN null;
END $$;
