import Foundation
import PostgresNIO
import TallyPostgres
import TallyTestSupport
import Testing

@Suite struct OperatorCommandTests {
    @Test(.freshDatabase) func usersCreditsKeysAndAudit() async throws {
        let db = try TestDatabase.current
        let url = ["--database-url", db.url()]
        // An external database must be migrated first: the commands say so.
        let early = try await TallyProcess.run(["users", "create", "--email", "ops@example.com", "--password", "password123"] + url)
        #expect(early.status != 0)
        #expect(early.stderr.contains("pending migration"))
        #expect(try await TallyProcess.run(["migrate", "up", "--no-backup"] + url).status == 0)

        let admin = try await TallyProcess.run(["users", "create", "--email", "ops@example.com", "--password", "password123", "--admin"] + url)
        #expect(admin.status == 0, Comment(rawValue: admin.stderr))
        #expect(admin.stdout.contains("Created admin ops@example.com"))
        let again = try await TallyProcess.run(["users", "create", "--email", "OPS@example.com", "--password", "password123"] + url)
        #expect(again.status != 0)
        #expect(again.stderr.contains("already exists"))
        let noPassword = try await TallyProcess.run(["users", "create", "--email", "x@example.com"] + url)
        #expect(noPassword.stderr.contains("give --password"))

        let grant = try await TallyProcess.run(["credits", "grant", "--user", "ops@example.com", "--amount", "100"] + url)
        #expect(grant.stdout.contains("the balance is now 100"), Comment(rawValue: grant.stderr))
        #expect(try await scalar(db, "SELECT count(*) FROM admin_audit WHERE action = 'grant' AND actor LIKE 'operator % (tally credits grant)' AND actor_user_id IS NULL") == 1,
                "an operator's grant is in the admin audit log")
        let key = try await TallyProcess.run(["keys", "create", "--user", "ops@example.com", "--limit", "50"] + url)
        #expect(key.status == 0)
        #expect(key.stdout.hasPrefix("tly_"))
        let unknown = try await TallyProcess.run(["credits", "grant", "--user", "nobody@example.com", "--amount", "1"] + url)
        #expect(unknown.stderr.contains("no user nobody@example.com"))
        let badTime = try await TallyProcess.run(["credits", "grant", "--user", "ops@example.com", "--amount", "1", "--expires", "tomorrow"] + url)
        #expect(badTime.status == 64)
        #expect(badTime.stderr.contains("--expires must be an ISO 8601 time such as 2026-12-31T23:59:59Z"), "\(badTime.stderr)")

        let audit = try await TallyProcess.run(["db", "audit"] + url)
        #expect(audit.status == 0, Comment(rawValue: audit.stdout + audit.stderr))
        #expect(audit.stdout.contains("All 1 account(s) balance"))

        // A balance changed behind the ledger's back is caught.
        try await withSingleConnection(db) { try await $0.execute("UPDATE user_credits SET balance = balance + 7") }
        let broken = try await TallyProcess.run(["db", "audit"] + url)
        #expect(broken.status == 1)
        #expect(broken.stdout.contains("balance 107 ≠ sum of ledger entries 100"))

        // So is a reservation no open hold accounts for.
        try await withSingleConnection(db) { try await $0.execute("UPDATE user_credits SET balance = balance - 7, held = 5") }
        let held = try await TallyProcess.run(["db", "audit"] + url)
        #expect(held.status == 1)
        #expect(held.stdout.contains("held 5 ≠ sum of open holds 0"), Comment(rawValue: held.stdout))
        #expect(!held.stdout.contains("ledger entries"))
    }

    /// `tally users erase`: asks first, then erases the person and keeps the ledger, saying what it did.
    @Test(.freshDatabase(from: .tally)) func usersEraseAsksFirstAndKeepsTheLedger() async throws {
        let db = try TestDatabase.current
        let url = ["--database-url", db.url()]
        #expect(try await TallyProcess.run(["users", "create", "--email", "grace@example.com", "--password", "password123", "--name", "Grace"] + url).status == 0)
        #expect(try await TallyProcess.run(["credits", "grant", "--user", "grace@example.com", "--amount", "40"] + url).status == 0)
        #expect(try await TallyProcess.run(["keys", "create", "--user", "grace@example.com"] + url).status == 0)

        let unasked = try await TallyProcess.run(["users", "erase", "--user", "grace@example.com"] + url)
        #expect(unasked.status != 0 && unasked.stderr.contains("run again with --yes"), Comment(rawValue: unasked.stderr))
        #expect(try await scalar(db, "SELECT count(*) FROM users WHERE email = 'grace@example.com'") == 1, "nothing changed without --yes")

        let erased = try await TallyProcess.run(["users", "erase", "--user", "GRACE@example.com", "--yes", "--json"] + url)
        #expect(erased.status == 0, Comment(rawValue: erased.stderr))
        let answer = try JSONSerialization.jsonObject(with: Data(erased.stdout.utf8)) as? [String: Any] ?? [:]
        #expect(answer["forfeited"] as? Int == 40 && answer["revoked_keys"] as? Int == 1 && answer["ledger_entries"] as? Int == 2, "\(answer)")
        #expect(try await scalar(db, "SELECT count(*) FROM users WHERE email LIKE 'erased-%@erased.invalid' AND name IS NULL AND erased_at IS NOT NULL") == 1)
        #expect(try await scalar(db, "SELECT count(*) FROM credit_transactions") == 2)
        #expect(try await TallyProcess.run(["db", "audit"] + url).status == 0)
        let again = try await TallyProcess.run(["users", "erase", "--user", "grace@example.com", "--yes"] + url)
        #expect(again.status != 0 && again.stderr.contains("no user grace@example.com"), Comment(rawValue: again.stderr))
    }

    /// `tally keys create --service`: a service key printed once, listed without it, revoked after asking.
    @Test(.freshDatabase(from: .tally)) func serviceKeysFromTheCommandLine() async throws {
        let db = try TestDatabase.current
        let url = ["--database-url", db.url()]
        let noScope = try await TallyProcess.run(["keys", "create", "--service", "--name", "backend"] + url)
        #expect(noScope.status == 64 && noScope.stderr.contains("give at least one --scope"), Comment(rawValue: noScope.stderr))
        let badScope = try await TallyProcess.run(["keys", "create", "--service", "--scope", "admin"] + url)
        #expect(badScope.status == 64 && badScope.stderr.contains("unknown scope \"admin\""), Comment(rawValue: badScope.stderr))
        let mixed = try await TallyProcess.run(["keys", "create", "--service", "--scope", "grants:write", "--user", "x@example.com"] + url)
        #expect(mixed.status == 64, Comment(rawValue: mixed.stderr))

        let made = try await TallyProcess.run(["keys", "create", "--service", "--name", "backend", "--scope", "grants:write", "--scope", "accounts:read"] + url)
        #expect(made.status == 0, Comment(rawValue: made.stderr))
        let key = made.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(key.range(of: "^tly_svc_[0-9A-Za-z]{49}$", options: .regularExpression) != nil, "\(key)")
        let listed = try await TallyProcess.run(["keys", "list", "--service", "--json"] + url)
        #expect(listed.status == 0 && !listed.stdout.contains(key), Comment(rawValue: listed.stderr))
        let keys = try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]] ?? []
        let id = try #require(keys.first?["id"] as? String)
        #expect(keys.first?["scopes"] as? [String] == ["accounts:read", "grants:write"] && keys.first?["revoked_at"] == nil)
        #expect(try await scalar(db, "SELECT count(*) FROM admin_audit WHERE action = 'service-key.create' AND actor LIKE 'operator % (tally keys create --service)'") == 1)

        let unasked = try await TallyProcess.run(["keys", "revoke", "--service", id] + url)
        #expect(unasked.status != 0 && unasked.stderr.contains("run again with --yes"), Comment(rawValue: unasked.stderr))
        #expect(try await scalar(db, "SELECT count(*) FROM service_keys WHERE revoked_at IS NULL") == 1, "nothing changed without --yes")
        let revoked = try await TallyProcess.run(["keys", "revoke", "--service", id, "--yes"] + url)
        #expect(revoked.status == 0, Comment(rawValue: revoked.stderr))
        #expect(try await scalar(db, "SELECT count(*) FROM service_keys WHERE revoked_at IS NOT NULL AND revoked_by_name LIKE 'operator %'") == 1)
        let human = try await TallyProcess.run(["keys", "list", "--service"] + url)
        #expect(human.stdout.contains("revoked") && human.stdout.contains("backend"), Comment(rawValue: human.stdout))
    }

    /// The ledger refuses deletes, save those of `db orphans --clean`, which archives each row as it deletes
    /// it: rows naming a user who does not exist leave the ledger that way, and come back with `--restore`.
    @Test(.freshDatabase(from: .tally)) func orphanedLedgerRowsLeaveOnlyThroughTheArchive() async throws {
        let db = try TestDatabase.current
        let url = ["--database-url", db.url()]
        #expect(try await TallyProcess.run(["users", "create", "--email", "ops@example.com", "--password", "password123"] + url).status == 0)
        #expect(try await TallyProcess.run(["credits", "grant", "--user", "ops@example.com", "--amount", "100"] + url).status == 0)
        // A row of the right account that names a user nobody has (as a hand-run import might leave).
        try await withSingleConnection(db) {
            try await $0.execute("""
                INSERT INTO credit_transactions (account_id, user_id, kind, amount, balance_after, description)
                SELECT id, gen_random_uuid(), 'adjust', 0, balance, 'imported' FROM user_credits
                """)
        }
        let refused = try await withSingleConnection(db) { connection -> String? in
            do { try await connection.execute("DELETE FROM credit_transactions WHERE description = 'imported'"); return nil } catch { return describe(error) }
        }
        #expect(refused?.contains("the ledger is append-only") == true, "\(refused ?? "deleted")")

        let fk = ["--fk", "credit_transactions.user_id=users.id"]
        let clean = try await TallyProcess.run(["db", "orphans"] + fk + ["--clean", "--yes"] + url)
        #expect(clean.status == 0, Comment(rawValue: clean.stdout + clean.stderr))
        let imported: PostgresQuery = "SELECT count(*)::int FROM credit_transactions WHERE description = 'imported'"
        #expect(try await scalar(db, imported) == 0)
        #expect(try await TallyProcess.run(["db", "audit"] + url).status == 0)
        let batch = try await scalar(db, "SELECT max(id)::int FROM tally_archive.batches")
        let restore = try await TallyProcess.run(["db", "orphans", "--restore", String(batch), "--yes"] + url)
        #expect(restore.status == 0, Comment(rawValue: restore.stdout + restore.stderr))
        #expect(try await scalar(db, imported) == 1)
    }
}
