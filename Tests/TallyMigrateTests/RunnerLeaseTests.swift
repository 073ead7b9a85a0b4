import Foundation
import PostgresNIO
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyMigrate

/// The runner lock is a lease row, not session state: a live holder makes others wait (and says who it is), a
/// runner that died is taken over once its lease expires, a runner that lost its lease applies nothing more,
/// and nothing is left behind.
@Suite struct RunnerLeaseTests {
    func leaseRows(_ db: ConnectionSettings) async throws -> Int {
        try await query(db, "SELECT count(*)::int FROM tally_migrate.runner_leases", as: Int.self).first ?? -1
    }

    @Test(.freshDatabase) func aLiveHolderMakesUpWaitAndSayWhoThenFail() async throws {
        let db = try TestDatabase.current
        let folder = try DrizzleFolder([("0000_t", 1, "CREATE TABLE t (id int);")])
        defer { folder.remove() }
        var options = Migrator.Options()
        options.runnerWait = .milliseconds(600)
        let lines = Lines()
        let migrator = Migrator(folder: try MigrationFolder(path: folder.path), database: db, options: options) { lines.append($0) }
        try await withSingleConnection(db) { connection in
            try await RunnerLease.ensureTable(on: connection)
            try await connection.run("""
                INSERT INTO tally_migrate.runner_leases (history_table, owner, holder, expires_at)
                VALUES ('drizzle.__drizzle_migrations', gen_random_uuid(), 'deploy-7 pid 42', now() + interval '1 minute')
                """)
        }
        let started = ContinuousClock.now
        await #expect {
            _ = try await migrator.up()
        } throws: { error in
            guard let error = error as? MigrateError, error.code == .lockTimeout else { return false }
            return error.message.contains("deploy-7 pid 42")
        }
        let waited = ContinuousClock.now - started
        #expect(waited >= .milliseconds(600) && waited < .seconds(20), "waited \(waited) for a 0.6 s --runner-wait")
        #expect(lines.all.contains { $0.contains("Another runner (deploy-7 pid 42)") }, "\(lines.all)")
        #expect(try await query(db, "SELECT count(*)::int FROM pg_tables WHERE tablename = 't'", as: Int.self) == [0])
    }

    @Test(.freshDatabase) func anExpiredLeaseIsTakenOverAndNothingIsLeftBehind() async throws {
        let db = try TestDatabase.current
        let folder = try DrizzleFolder([("0000_t", 1, "CREATE TABLE t (id int);")])
        defer { folder.remove() }
        let lines = Lines()
        var options = Migrator.Options()
        options.runnerWait = .seconds(60)
        let migrator = Migrator(folder: try MigrationFolder(path: folder.path), database: db, options: options) { lines.append($0) }
        try await withSingleConnection(db) { connection in
            try await RunnerLease.ensureTable(on: connection)
            try await connection.run("""
                INSERT INTO tally_migrate.runner_leases (history_table, owner, holder, expires_at)
                VALUES ('drizzle.__drizzle_migrations', gen_random_uuid(), 'crashed pid 9', now() - interval '1 second')
                """)
        }
        #expect(try await migrator.up().applied == ["0000_t"])
        #expect(!lines.all.contains { $0.contains("Another runner") }, "a dead runner's expired lease makes nobody wait: \(lines.all)")
        #expect(lines.all.contains { $0.contains("Took over the migration lease") && $0.contains("crashed pid 9") }, "\(lines.all)")
        #expect(try await leaseRows(db) == 0, "the lease is deleted at the end")
        let advisory: PostgresQuery = "SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        #expect(try await query(db, advisory, as: Int.self) == [0], "no advisory lock is left")
    }

    @Test(.freshDatabase) func aRunnerThatLostItsLeaseAppliesNothingMore() async throws {
        let db = try TestDatabase.current
        // The first migration hands the lease to someone else (as a takeover after a stall would).
        let folder = try DrizzleFolder([
            ("0000_t", 1, "CREATE TABLE t (id int);\n--> statement-breakpoint\nUPDATE tally_migrate.runner_leases SET owner = gen_random_uuid(), holder = 'the next runner';"),
            ("0001_u", 2, "CREATE TABLE u (id int);"),
        ])
        defer { folder.remove() }
        let migrator = Migrator(folder: try MigrationFolder(path: folder.path), database: db)
        await #expect {
            _ = try await migrator.up()
        } throws: { error in
            guard let error = error as? MigrateError, error.code == .lockTimeout else { return false }
            return error.message.contains("lost its lease")
        }
        let tables = try await query(db, "SELECT tablename::text FROM pg_tables WHERE tablename IN ('t', 'u') ORDER BY 1", as: String.self)
        #expect(tables == ["t"], "0001_u was not applied by the runner that lost the lease")
        #expect(try await query(db, "SELECT holder FROM tally_migrate.runner_leases", as: String.self) == ["the next runner"], "another's lease is not deleted")
    }

    @Test(.freshDatabase) func theLeaseIsRenewedWhileARunnerWorks() async throws {
        let db = try TestDatabase.current
        let folder = try DrizzleFolder([("0000_slow", 1, "SELECT pg_sleep(15);\n--> statement-breakpoint\nCREATE TABLE slow (id int);")])
        defer { folder.remove() }
        var options = Migrator.Options()
        // 12 s, renewed every 4 s: a loaded CI machine that stalls the test process for a few seconds still
        // renews in time.
        options.leaseTimeToLive = .seconds(12)
        let migrator = Migrator(folder: try MigrationFolder(path: folder.path), database: db, options: options)
        async let applied = migrator.up().applied
        // Meanwhile, inside the migration's transaction, a second runner finds the lease live (renewed past its
        // first 12 s) and waits rather than taking over.
        try await Task.sleep(for: .seconds(13))
        var second = Migrator.Options()
        second.runnerWait = .milliseconds(300)
        await #expect(throws: MigrateError.self) {
            _ = try await Migrator(folder: try MigrationFolder(path: folder.path), database: db, options: second).up()
        }
        #expect(try await applied == ["0000_slow"])
        #expect(try await leaseRows(db) == 0)
    }
}
