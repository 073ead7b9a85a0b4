-- The fltr_auth database as the seed found it in production, after 0000 and 0001 were applied by hand
-- (setup.sh runs them first): no migration history, a second foreign key on user_credits.team_id added
-- by the FastAPI side, test accounts whose users were deleted (orphaned user_credits, with their
-- credit_transactions and api_key_credits), and the history rows of the runbook's Step 4, typed in by hand.

ALTER TABLE user_credits ADD CONSTRAINT user_credits_team_id_fkey FOREIGN KEY (team_id) REFERENCES teams(id);

INSERT INTO users (id, email, name) VALUES
    ('usr_alice', 'alice@example.com', 'Alice'),
    ('usr_bob', 'bob@example.com', 'Bob');
INSERT INTO teams (id, name) VALUES ('team_core', 'Core');

INSERT INTO user_credits (user_id, team_id, balance) VALUES
    ('usr_alice', 'team_core', 1000),
    ('usr_bob', NULL, 250),
    ('usr_test_deleted_1', NULL, 50),
    ('usr_test_deleted_2', 'team_core', 75);

INSERT INTO credit_transactions (user_id, amount, kind, description) VALUES
    ('usr_alice', 1000, 'grant', 'signup bonus'),
    ('usr_bob', 250, 'grant', 'signup bonus'),
    ('usr_test_deleted_1', 50, 'grant', 'test grant'),
    ('usr_test_deleted_2', 100, 'grant', 'test grant'),
    ('usr_test_deleted_2', -25, 'consume', 'test spend');

INSERT INTO api_key_credits (api_key_id, user_id, credits_used, credit_limit) VALUES
    ('key_alice_1', 'usr_alice', 10, 500),
    ('key_test_1', 'usr_test_deleted_1', 0, 100);

-- Step 4 of the runbook, verbatim: a history table in public, and hashes that match no file.
CREATE TABLE IF NOT EXISTS __drizzle_migrations (
    id SERIAL PRIMARY KEY,
    hash TEXT NOT NULL,
    created_at BIGINT
);
INSERT INTO __drizzle_migrations (hash, created_at) VALUES
    ('0baa8af38816a34b1e4470ba4ee5a49a5e0e4a8c1d5e1fde83f26f2b1be57c4b', 1760114263106),
    ('38f04f0b6c736ed30fee6e7d77f08e97c3f2a4f0dc85f5426a3b5bd1dd859f53', 1761915734970),
    ('e3c7a8f2c09fc8ad3e0d5b64f1a8e7c4b2f9a8e1d0c5b3a4f2e8d7c6b5a4e3f2', 1762369692832)
ON CONFLICT DO NOTHING;
