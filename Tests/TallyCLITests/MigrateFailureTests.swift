import Foundation
import PostgresNIO
import TallyPostgres
import TallyTestSupport
import Testing

/// Every migrate command meets a statement the server refuses, and says what the server said: migration,
/// statement, file and line, SQLSTATE and message; never postgres-nio's placeholder.
@Suite struct MigrateFailureTests {
    static let placeholder = "Generic description"

    /// A Drizzle folder written for the test; removed afterwards.
    struct Folder {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tally-fail-\(UUID().uuidString.prefix(8))").path

        init(_ files: [(tag: String, sql: String)], downs: [String: String] = [:]) throws {
            try FileManager.default.createDirectory(atPath: path + "/meta", withIntermediateDirectories: true)
            let entries = files.enumerated().map { i, f in #"{"idx": \#(i), "version": "7", "when": \#(1_700_000_000_000 + i), "tag": "\#(f.tag)", "breakpoints": true}"# }
            try #"{"version": "7", "dialect": "postgresql", "entries": [\#(entries.joined(separator: ", "))]}"#
                .write(toFile: path + "/meta/_journal.json", atomically: true, encoding: .utf8)
            for f in files { try f.sql.write(toFile: "\(path)/\(f.tag).sql", atomically: true, encoding: .utf8) }
            for (tag, sql) in downs { try sql.write(toFile: "\(path)/\(tag).down.sql", atomically: true, encoding: .utf8) }
        }

        func remove() { try? FileManager.default.removeItem(atPath: path) }
    }

    func tally(_ arguments: String..., db: ConnectionSettings) async throws -> TallyProcess.Result {
        try await TallyProcess.run(arguments + ["--database-url", db.url()])
    }

    @Test(.freshDatabase) func everyMigrateCommandShowsTheServersMessage() async throws {
        let db = try TestDatabase.current
        let folder = try Folder([
            ("0000_base", "CREATE TABLE base (id int PRIMARY KEY);"),
            ("0001_broken", "CREATE TABLE ok (id int);\n--> statement-breakpoint\n-- the table was never created\nINSERT INTO missing_table VALUES (1);"),
        ], downs: ["0000_base": "DROP TABLE base;\nDROP TABLE not_there;"])
        defer { folder.remove() }
        let serverSays = #"relation "missing_table" does not exist (SQLSTATE 42P01)"#

        let up = try await tally("migrate", "up", "--dir", folder.path, "--no-backup", db: db)
        #expect(up.status == 1)
        for part in ["0001_broken", "statement 2 of 2", "0001_broken.sql:4", serverSays, "rolled back"] {
            #expect(up.stderr.contains(part), "up: \(part)\n\(up.stderr)")
        }

        let status = try await tally("migrate", "status", "--dir", folder.path, db: db)
        #expect(status.stdout.contains("Last run of 0001_broken failed at statement 2"), Comment(rawValue: status.stdout))
        #expect(status.stdout.contains(serverSays))

        let validate = try await tally("migrate", "validate", "--strict", "--dir", folder.path, db: db)
        #expect(validate.status == 1)
        #expect(validate.stdout.contains(serverSays))

        let baseline = try await tally("migrate", "baseline", "--through", "0001_broken", "--dir", folder.path, db: db)
        #expect(baseline.status == 1)
        #expect(baseline.stderr.contains("0001_broken.sql:4") && baseline.stderr.contains(serverSays), Comment(rawValue: baseline.stderr))

        let plan = try await tally("migrate", "plan", "--dir", folder.path, db: db)
        #expect(plan.stdout.contains("0001_broken"))

        let down = try await tally("migrate", "down", "--dir", folder.path, "--yes", db: db)
        #expect(down.status == 1)
        for part in ["reverting 0000_base failed at statement 2 of 2", "0000_base.down.sql:2", #"table "not_there" does not exist (SQLSTATE 42P01)"#] {
            #expect(down.stderr.contains(part), "down: \(part)\n\(down.stderr)")
        }

        // db verify applies what the history says ran: a hand-typed row for the broken migration.
        let hash = try await Command.run("/usr/bin/sha256sum", [folder.path + "/0001_broken.sql"]).output.prefix(64)
        try await withSingleConnection(db) { connection in
            try await connection.execute(PostgresQuery(unsafeSQL: "INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES ('\(hash)', 1700000000001)"))
        }
        let verify = try await tally("db", "verify", "--dir", folder.path, db: db)
        #expect(verify.status == 1)
        #expect(verify.stderr.contains("0001_broken.sql:4") && verify.stderr.contains(serverSays), Comment(rawValue: verify.stderr))
        #expect(!verify.stderr.contains("--force"), "db verify has no --force to suggest")


        // A history table the app made with a type Tally cannot read: the server's words, not a placeholder.
        try await withSingleConnection(db) { connection in
            try await connection.execute("CREATE SCHEMA odd")
            try await connection.execute("CREATE TABLE odd.__drizzle_migrations (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), hash text NOT NULL, created_at bigint)")
            try await connection.execute("INSERT INTO odd.__drizzle_migrations (hash) VALUES ('x')")
        }
        let odd = try await tally("migrate", "status", "--dir", folder.path, "--history-table", "odd.__drizzle_migrations", db: db)
        #expect(odd.status != 0)
        #expect(odd.stderr.contains("SQLSTATE"), Comment(rawValue: odd.stderr))

        for result in [up, status, validate, baseline, plan, verify, down, odd] {
            #expect(!(result.stdout + result.stderr).contains(Self.placeholder), "\(result.stdout)\n\(result.stderr)")
        }
    }

    @Test(.freshDatabase) func planExitsNonZeroOnAnErrorFindingInsideADoBlock() async throws {
        let db = try TestDatabase.current
        let folder = try Folder([
            ("0000_base", "CREATE TABLE t (id int PRIMARY KEY);\n--> statement-breakpoint\nINSERT INTO t VALUES (1), (2);"),
            ("0001_required", """
                DO $$ BEGIN
                 ALTER TABLE "t" ADD COLUMN "c" integer NOT NULL;
                EXCEPTION
                 WHEN duplicate_column THEN null;
                END $$;
                --> statement-breakpoint
                DO $$ BEGIN CREATE INDEX "t_c_idx" ON "t" ("c"); END $$;
                """),
        ])
        defer { folder.remove() }
        let first = try await tally("migrate", "up", "--to", "0000_base", "--dir", folder.path, "--no-backup", db: db)
        #expect(first.status == 0, Comment(rawValue: first.stderr))
        let plan = try await tally("migrate", "plan", "--dir", folder.path, db: db)
        #expect(plan.status == 1, Comment(rawValue: plan.stdout))
        #expect(plan.stdout.contains("error  adding-required-field"))
        #expect(plan.stdout.contains("warning  require-concurrent-index-creation"))
        #expect(plan.stdout.contains("1 lint error(s)"))
    }

    @Test(.freshDatabase) func jsonTimestampsAreISO8601() async throws {
        let db = try TestDatabase.current
        let folder = try Folder([("0000_base", "CREATE TABLE base (id int PRIMARY KEY);")])
        defer { folder.remove() }
        _ = try await tally("migrate", "up", "--dir", folder.path, "--no-backup", db: db)
        let status = try await tally("migrate", "status", "--dir", folder.path, "--json", db: db)
        let object = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
        let appliedAt = ((object?["entries"] as? [[String: Any]])?.first?["applied_at"]) as? String
        let parsed = appliedAt.flatMap { ISO8601DateFormatter().date(from: $0) }
        #expect(parsed != nil, "applied_at: \(String(describing: appliedAt))")
        #expect(abs(parsed?.timeIntervalSinceNow ?? .infinity) < 600)
    }
}
