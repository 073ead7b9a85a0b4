import Foundation
import PostgresNIO
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyMigrate

@Suite struct OrphanTests {
    /// The seed's production data: orphaned user_credits with dependent credit_transactions and api_key_credits
    /// (references the database does not declare), and a declared dependent table.
    func seed(_ db: ConnectionSettings) async throws {
        _ = try await Migrator(folder: try MigrationFolder(path: nextjsFolder), database: db).up(to: "0001_quiet_storm")
        try await execute(db, """
            CREATE TABLE credit_notes (id serial PRIMARY KEY, credit_id int NOT NULL REFERENCES user_credits(id) ON DELETE CASCADE, note text);
            INSERT INTO users (id, email) VALUES ('u1', 'a@example.com');
            INSERT INTO user_credits (id, user_id, balance) VALUES (1, 'u1', 10), (2, 'ghost', 5), (3, 'ghost2', 7);
            INSERT INTO credit_notes (credit_id, note) VALUES (1, 'kept'), (2, 'goes with ghost');
            INSERT INTO credit_transactions (user_id, amount, kind) VALUES ('u1', 10, 'grant'), ('ghost', 5, 'grant'), ('ghost2', 7, 'grant');
            INSERT INTO api_key_credits (api_key_id, user_id) VALUES ('k1', 'u1'), ('k2', 'ghost');
            """)
    }

    func counts(_ db: ConnectionSettings) async throws -> [Int] {
        var out: [Int] = []
        for table in ["user_credits", "credit_notes", "credit_transactions", "api_key_credits"] {
            out += try await query(db, PostgresQuery(unsafeSQL: "SELECT count(*)::int FROM \(table)"), as: Int.self)
        }
        return out
    }

    let userFK = ForeignKeyDefinition(
        name: nil, table: QualifiedName(name: "user_credits"), columns: ["user_id"],
        referencedTable: QualifiedName(name: "users"), referencedColumns: ["id"], notValid: false)

    /// `tally db orphans` without --fk, as a library call: every declared key, plus the pending ones given.
    @Test(.freshDatabase) func scanAllCoversDeclaredAndPendingKeysAndChecksGivenOnes() async throws {
        let db = try TestDatabase.current
        try await seed(db)
        let lines = Lines()
        let reports = try await withSingleConnection(db) { connection in
            try await OrphanScan.scanAll(explicit: [], pending: [(userFK, "0002_pending")], on: connection) { lines.append($0) }
        }
        let declared = reports.first { $0.foreignKey.table.name == "credit_notes" }
        #expect(declared?.orphanedRows == 0, "the declared key has no orphans")
        let pending = reports.first { $0.source == "0002_pending" }
        #expect(pending?.orphanedRows == 2)
        #expect(lines.all.filter { $0.hasPrefix("Scanning ") }.count == reports.count)

        let missing = ForeignKeyDefinition(
            name: nil, table: QualifiedName(name: "no_such_table"), columns: ["user_id"],
            referencedTable: QualifiedName(name: "users"), referencedColumns: ["id"], notValid: false)
        await #expect(throws: (any Error).self) {
            try await withSingleConnection(db) { try await OrphanScan.scanAll(explicit: [missing], on: $0) }
        }
    }

    @Test(.freshDatabase) func scanCountsOrphansWithSamples() async throws {
        let db = try TestDatabase.current
        try await seed(db)
        let report = try await withSingleConnection(db) { try await OrphanScan.scan(userFK, source: "--fk", on: $0) }
        #expect(report.orphanedRows == 2)
        #expect(report.sampleKeys == ["ghost", "ghost2"])

        // The pending 0002 adds exactly this key: found without --fk.
        let migrator = Migrator(folder: try MigrationFolder(path: nextjsFolder), database: db)
        let pending = try await OrphanScan.pendingForeignKeys(migrator)
        #expect(pending.map(\.0.name) == ["user_credits_user_id_users_id_fk"])
        #expect(pending.map(\.1) == ["pending migration 0002_flashy_nova"])
    }

    @Test(.freshDatabase) func cleanArchivesOrphansAndDependentsInOneGoAndRestorePutsThemBack() async throws {
        let db = try TestDatabase.current
        try await seed(db)
        let before = try await counts(db)
        #expect(before == [3, 2, 3, 2])
        let batch = try await withSingleConnection(db) { connection in
            try await OrphanArchive.clean(
                [userFK],
                include: [
                    .init(table: QualifiedName(name: "credit_transactions"), column: "user_id"),
                    .init(table: QualifiedName(name: "api_key_credits"), column: "user_id"),
                ],
                reason: "seed step 3", osUser: "test", on: connection)
        }
        #expect(Dictionary(uniqueKeysWithValues: batch.moved.map { ($0.table, $0.rows) }) == [
            "public.user_credits": 2, "public.credit_notes": 1, "public.credit_transactions": 2, "public.api_key_credits": 1,
        ])
        #expect(try await counts(db) == [1, 1, 1, 1])
        // Every deleted row is in the archive.
        #expect(try await query(db, "SELECT count(*)::int FROM tally_archive.rows WHERE batch_id = \(batch.id)", as: Int.self) == [6])
        // Now the key can be added.
        #expect(try await Migrator(folder: try MigrationFolder(path: nextjsFolder), database: db).up().applied == ["0002_flashy_nova"])

        // Restoring orphans the key now forbids fails whole, with a clear message, and changes nothing.
        await #expect {
            try await withSingleConnection(db) { try await OrphanArchive.restore(batch: batch.id, on: $0) }
        } throws: { error in
            (error as? MigrateError)?.message.contains("restore their parent rows first") == true
        }
        #expect(try await counts(db) == [1, 1, 1, 1])

        // Without the key, the batch comes back whole.
        try await execute(db, "ALTER TABLE user_credits DROP CONSTRAINT user_credits_user_id_users_id_fk")
        let restored = try await withSingleConnection(db) { try await OrphanArchive.restore(batch: batch.id, on: $0) }
        #expect(restored.restoredAt != nil)
        #expect(try await counts(db) == before)
        #expect(try await query(db, "SELECT note FROM credit_notes ORDER BY id", as: String.self) == ["kept", "goes with ghost"])
        await #expect(throws: MigrateError.self) {
            try await withSingleConnection(db) { try await OrphanArchive.restore(batch: batch.id, on: $0) }
        }
    }

    @Test(.freshDatabase) func unknownTablesAndColumnsAreClearErrors() async throws {
        let db = try TestDatabase.current
        try await seed(db)
        try await withSingleConnection(db) { connection in
            await #expect {
                try await OrphanScan.check(try OrphanScan.parseForeignKey("user_creditz.user_id=users.id"), on: connection)
            } throws: { ($0 as? MigrateError)?.message.contains("unknown table public.user_creditz") == true }
            await #expect {
                try await OrphanScan.check(try OrphanScan.parseForeignKey("user_credits.user_id=users.uuid"), on: connection)
            } throws: { ($0 as? MigrateError)?.message.contains("unknown column uuid in table public.users") == true }
        }
        #expect(throws: MigrateError.self) { try OrphanScan.parseForeignKey("user_credits.user_id") }
        #expect(throws: MigrateError.self) { try OrphanScan.parseForeignKey("user_credits=users.id") }
    }
}
