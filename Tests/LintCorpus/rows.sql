-- Rows for the filled case.
INSERT INTO teams SELECT g, 'team ' || g FROM generate_series(1, 500) g;
INSERT INTO accounts (id, team_id, email, name, score, amount)
    SELECT g, 1 + g % 500, 'user' || g || '@example.com', 'user ' || g, g % 100, g FROM generate_series(1, 5000) g;
INSERT INTO audit_log SELECT g, 1 + g % 5000, 'event ' || g FROM generate_series(1, 5000) g;
INSERT INTO events SELECT g, '2024-03-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, 5000) g;
-- An audit row whose account is gone: what a foreign key added later meets.
INSERT INTO audit_log VALUES (5001, 999999, 'orphan');
ANALYZE;
