-- Sessions users control: each remembers when it was last used (an idle session ends; the server slides
-- last_used_at at most once a minute), and from where it began (client address and User-Agent, for the
-- list of one's sessions). expires_at stays the absolute end.
ALTER TABLE "sessions" ADD COLUMN IF NOT EXISTS "last_used_at" timestamp with time zone DEFAULT now() NOT NULL;
--> statement-breakpoint
ALTER TABLE "sessions" ADD COLUMN IF NOT EXISTS "client_address" text;
--> statement-breakpoint
ALTER TABLE "sessions" ADD COLUMN IF NOT EXISTS "user_agent" text;
