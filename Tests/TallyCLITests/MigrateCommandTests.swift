import Foundation
import PostgresNIO
import TallyPostgres
import TallyTestSupport
import Testing

@Suite struct MigrateCommandTests {
    /// The Next.js app's Drizzle folder that the migrate tests ship.
    static var nextjsFolder: String {
        TestDatabase.packageRoot.appendingPathComponent("examples/fltr-auth/migrations").path
    }

    /// The tags of Tally's own migrations, read from the journal the way a user would.
    /// (Empty if the journal cannot be read, which the tests comparing against it then report.)
    static var ownTags: [String] {
        struct Journal: Decodable { struct Entry: Decodable { var tag: String }; var entries: [Entry] }
        let path = TestDatabase.packageRoot.appendingPathComponent("Migrations/meta/_journal.json").path
        guard let data = FileManager.default.contents(atPath: path), let journal = try? JSONDecoder().decode(Journal.self, from: data) else { return [] }
        return journal.entries.map(\.tag)
    }

    struct Report: Decodable {
        struct Entry: Decodable { var tag: String; var state: String }
        var entries: [Entry]
        var unknown_rows: [UnknownRow]
        struct UnknownRow: Decodable { var hash: String }
    }

    /// `--log-level` reaches the statements a command runs: at debug the connection's work is logged (to
    /// stderr, so `--json` stays clean); by default nothing below a warning is.
    @Test(.freshDatabase) func logLevelIsHonouredByEveryDatabaseCommand() async throws {
        let db = try TestDatabase.current
        let quiet = try await TallyProcess.run(["migrate", "status", "--json", "--database-url", db.url()])
        #expect(quiet.status == 0, Comment(rawValue: quiet.stderr))
        #expect(!quiet.stderr.contains("debug"), Comment(rawValue: quiet.stderr))
        let loud = try await TallyProcess.run(["migrate", "status", "--json", "--log-level", "debug", "--database-url", db.url()])
        #expect(loud.status == 0, Comment(rawValue: loud.stderr))
        #expect(loud.stderr.contains("debug tally.postgres") || loud.stderr.contains("debug tally.migrate"), Comment(rawValue: loud.stderr))
        #expect(loud.stdout == quiet.stdout, "logs stay off stdout")
        let audit = try await TallyProcess.run(["db", "audit", "--log-level", "trace", "--database-url", db.url()])
        #expect(audit.stderr.contains("trace tally"), Comment(rawValue: audit.stderr))
    }

    @Test(.freshDatabase) func tallysOwnSchemaAppliesWithoutDir() async throws {
        let db = try TestDatabase.current
        let url = db.url()
        let pending = try await TallyProcess.run(["migrate", "status", "--database-url", url])
        #expect(pending.status == 0, Comment(rawValue: pending.stderr))
        #expect(pending.stdout.contains("0000_credits_schema"))
        #expect(pending.stdout.contains("pending"))

        let up = try await TallyProcess.run(["migrate", "up", "--database-url", url, "--no-backup"])
        #expect(up.status == 0, Comment(rawValue: up.stderr))
        #expect(up.stdout.contains("Applied \(Self.ownTags.count): \(Self.ownTags.joined(separator: ", "))"))

        let status = try await TallyProcess.run(["migrate", "status", "--database-url", url, "--json"])
        #expect(status.status == 0)
        let report = try JSONDecoder().decode(Report.self, from: Data(status.stdout.utf8))
        #expect(report.entries.map(\.state) == Self.ownTags.map { _ in "applied" })

        let fk = try await withPostgresClient(db) { client in
            var rows: [String] = []
            for try await def in try await client.query("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'user_credits_user_id_users_id_fk'").decode(String.self) {
                rows.append(def)
            }
            return rows
        }
        #expect(fk == ["FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE"])
    }

    @Test(.freshDatabase) func twoUpProcessesStartedTogetherApplyEachMigrationOnce() async throws {
        let db = try TestDatabase.current
        // Non-idempotent statements: a second application would fail.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tally-race-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: folder + "/meta", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var entries: [String] = []
        for i in 0..<5 {
            let tag = String(format: "%04d_step", i)
            entries.append("{\"idx\": \(i), \"when\": \(1000 + i), \"tag\": \"\(tag)\", \"breakpoints\": true}")
            try "CREATE TABLE step_\(i) (id int);\n--> statement-breakpoint\nSELECT pg_sleep(0.2);"
                .write(toFile: "\(folder)/\(tag).sql", atomically: true, encoding: .utf8)
        }
        try "{\"version\": \"7\", \"dialect\": \"postgresql\", \"entries\": [\(entries.joined(separator: ","))]}"
            .write(toFile: folder + "/meta/_journal.json", atomically: true, encoding: .utf8)

        // Backups go beside a throwaway cluster folder; only the runner that applies takes one.
        let args = ["migrate", "up", "--dir", folder, "--database-url", db.url(), "--data-dir", folder + "/pg"]
        let a = try TallyProcess.launch(args)
        let b = try TallyProcess.launch(args)
        let (ra, rb) = (await TallyProcess.collect(a), await TallyProcess.collect(b))
        #expect(ra.status == 0, Comment(rawValue: ra.stderr))
        #expect(rb.status == 0, Comment(rawValue: rb.stderr))
        let outputs = [ra.stdout, rb.stdout]
        #expect(outputs.filter { $0.contains("Applied 5") }.count == 1)
        #expect(outputs.filter { $0.contains("Nothing to apply") }.count == 1)
        #expect((ra.stderr + rb.stderr).contains("Another runner"))
        let backups = try FileManager.default.contentsOfDirectory(atPath: folder + "/backups")
        #expect(backups.count == 1, "one backup, by the runner that applied: \(backups)")

        let rows = try await withPostgresClient(db) { client in
            var n = 0
            for try await c in try await client.query("SELECT count(*)::int FROM drizzle.__drizzle_migrations").decode(Int.self) { n = c }
            return n
        }
        #expect(rows == 5)
    }

    @Test(.freshDatabase) func statusAndValidateExitNonZeroOnHandTypedHistoryAndRepairNeedsYes() async throws {
        let db = try TestDatabase.current
        let url = db.url()
        let dir = Self.nextjsFolder
        #expect(try await TallyProcess.run(["migrate", "up", "--dir", dir, "--database-url", url, "--no-backup"]).status == 0)
        try await withSingleConnection(db) { connection in
            try await connection.execute("""
                INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES
                ('38f04f0b6c736ed30fee6e7d77f08e97c3f2a4f0dc85f5426a3b5bd1dd859f53', 1761915734971)
                """)
        }
        let status = try await TallyProcess.run(["migrate", "status", "--dir", dir, "--database-url", url])
        #expect(status.status == 1)
        #expect(status.stdout.contains("38f04f0b6c736ed30fee6e7d77f08e97c3f2a4f0dc85f5426a3b5bd1dd859f53"))
        #expect(status.stdout.contains("migrate repair"))
        let validate = try await TallyProcess.run(["migrate", "validate", "--dir", dir, "--database-url", url])
        #expect(validate.status == 1)

        let noYes = try await TallyProcess.run(["migrate", "repair", "--dir", dir, "--database-url", url])
        #expect(noYes.status != 0)
        #expect(noYes.stderr.contains("--yes"))
        #expect(try await TallyProcess.run(["migrate", "validate", "--dir", dir, "--database-url", url]).status == 1, "nothing changed")

        let repaired = try await TallyProcess.run(["migrate", "repair", "--dir", dir, "--database-url", url, "--yes"])
        #expect(repaired.status == 0, Comment(rawValue: repaired.stderr))
        #expect(try await TallyProcess.run(["migrate", "validate", "--dir", dir, "--database-url", url]).status == 0)
    }

    @Test(.freshDatabase) func everyCommandSaysWhenAnotherHistoryTableExists() async throws {
        let db = try TestDatabase.current
        try await withSingleConnection(db) { connection in
            try await connection.execute("CREATE TABLE public.__drizzle_migrations (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)")
        }
        for command in [["status"], ["up", "--dry-run"], ["validate"], ["down", "--yes"], ["repair", "--yes"]] {
            let result = try await TallyProcess.run(["migrate"] + command + ["--dir", Self.nextjsFolder, "--database-url", db.url()])
            #expect(result.stderr.contains("public.__drizzle_migrations also exists (0 rows)"), "\(command)")
        }
    }

    @Test func badInputIsAClearErrorBeforeTouchingTheDatabase() async throws {
        let missing = try await TallyProcess.run(["migrate", "status", "--dir", "/nonexistent/folder", "--database-url", "postgres://u@127.0.0.1:1/x"])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("/nonexistent/folder is not a folder"))

        let table = try await TallyProcess.run(["migrate", "status", "--history-table", "a.b.c", "--dir", Self.nextjsFolder, "--database-url", "postgres://u@127.0.0.1:1/x"])
        #expect(table.status != 0)
        #expect(table.stderr.contains("--history-table"))

        let tag = try await TallyProcess.run(["migrate", "up", "--to", "0009_nope", "--dir", Self.nextjsFolder, "--database-url", "postgres://u@127.0.0.1:1/x"])
        #expect(tag.status != 0)

        let help = try await TallyProcess.run(["migrate", "--help"])
        for sub in ["status", "up", "validate", "baseline", "repair", "down"] { #expect(help.stdout.contains(sub)) }
    }
}
