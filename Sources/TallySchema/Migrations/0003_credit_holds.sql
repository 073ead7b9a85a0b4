CREATE TABLE IF NOT EXISTS "credit_holds" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"account_id" uuid NOT NULL,
	"api_key_id" uuid NOT NULL,
	"amount" bigint NOT NULL,
	"status" text DEFAULT 'open' NOT NULL,
	"captured" bigint,
	"description" text,
	"expires_at" timestamp with time zone NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"settled_at" timestamp with time zone,
	CONSTRAINT "credit_holds_amount_check" CHECK ("amount" > 0 AND ("captured" IS NULL OR ("captured" > 0 AND "captured" <= "amount"))),
	CONSTRAINT "credit_holds_status_check" CHECK ("status" IN ('open', 'captured', 'released', 'expired'))
);
--> statement-breakpoint
ALTER TABLE "credit_holds" ADD CONSTRAINT "credit_holds_account_id_user_credits_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."user_credits"("id") ON DELETE cascade ON UPDATE no action;
--> statement-breakpoint
ALTER TABLE "credit_holds" ADD CONSTRAINT "credit_holds_api_key_id_api_keys_id_fk" FOREIGN KEY ("api_key_id") REFERENCES "public"."api_keys"("id") ON DELETE cascade ON UPDATE no action;
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "credit_holds_open_account_idx" ON "credit_holds" USING btree ("account_id", "expires_at") WHERE "status" = 'open';
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "credit_holds_open_expiry_idx" ON "credit_holds" USING btree ("expires_at") WHERE "status" = 'open';
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "credit_holds_api_key_id_idx" ON "credit_holds" USING btree ("api_key_id");
--> statement-breakpoint
ALTER TABLE "credit_transactions" ADD COLUMN IF NOT EXISTS "hold_id" uuid;
--> statement-breakpoint
ALTER TABLE "api_key_credits" ADD COLUMN IF NOT EXISTS "held" bigint DEFAULT 0 NOT NULL;
--> statement-breakpoint
ALTER TABLE "api_key_credits" ADD CONSTRAINT "api_key_credits_held_check" CHECK ("held" >= 0 AND ("credit_limit" IS NULL OR "used" + "held" <= "credit_limit")) NOT VALID;
--> statement-breakpoint
ALTER TABLE "api_key_credits" VALIDATE CONSTRAINT "api_key_credits_held_check";
