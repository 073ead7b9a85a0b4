import Foundation
import PostgresNIO
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyMigrate

/// Drizzle folders in the shapes drizzle-kit writes (Tests/DrizzleCorpus), each applied by Tally and, on
/// another database, file by file with psql: the schemas must be identical and the history exactly Drizzle's.
@Suite struct DrizzleCorpusTests {
    static let folders = ["v7-shop", "v5-concurrently", "v6-no-breakpoints", "v1-layout"]

    @Test(arguments: folders)
    func tallyUpGivesPsqlsSchemaAndDrizzlesHistory(_ name: String) async throws {
        let path = corpusFolder(name)
        let files = try CorpusFiles(path)
        let folder = try MigrationFolder(path: path)
        try await TestDatabase.withFreshDatabase { viaTally in
            try await TestDatabase.withFreshDatabase { viaPsql in
                let migrator = Migrator(folder: folder, database: viaTally)
                let first = try await migrator.up()
                #expect(first.applied == files.entries.map(\.name))

                for entry in files.entries { try await psql(viaPsql, file: entry.file) }
                let tallySchema = try await schemaDump(viaTally)
                let psqlSchema = try await schemaDump(viaPsql)
                #expect(tallySchema.contains("CREATE TABLE"), "the dump holds the schema")
                #expect(tallySchema == psqlSchema, "schema after `tally migrate up` differs from psql's in \(name)")

                // The history is what Drizzle writes, in Drizzle's own shape.
                let columns = try await query(viaTally, "SELECT attname::text FROM pg_attribute WHERE attrelid = 'drizzle.__drizzle_migrations'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum", as: String.self)
                let rows = try await query(viaTally, "SELECT hash || ' ' || created_at::text FROM drizzle.__drizzle_migrations ORDER BY id", as: String.self)
                #expect(rows == files.entries.map { "\($0.sha256) \($0.createdAt)" })
                if files.drizzle1 {
                    #expect(columns == ["id", "hash", "created_at", "name", "applied_at"])
                    let names = try await query(viaTally, "SELECT name FROM drizzle.__drizzle_migrations ORDER BY id", as: String.self)
                    #expect(names == files.entries.map(\.name))
                } else {
                    #expect(columns == ["id", "hash", "created_at"])
                }

                let second = try await migrator.up()
                #expect(second.applied.isEmpty)
                let status = try await migrator.status()
                #expect(status.isConsistent && status.pending.isEmpty && status.unvalidated.isEmpty && status.invalidIndexes.isEmpty)
                #expect(try await query(viaTally, "SELECT count(*)::int FROM pg_constraint WHERE NOT convalidated", as: Int.self) == [0])
                let verification = try await SchemaVerify.verify(viaTally, against: folder, historyTable: .drizzleDefault)
                #expect(verification.differences.isEmpty, "db verify: \(verification.differences)")
            }
        }
    }

    @Test func aJournalEntrylessFileIsIgnoredWithANote() throws {
        let folder = try MigrationFolder(path: corpusFolder("v7-shop"))
        #expect(folder.migrations.map(\.tag) == ["0000_keen_devos", "0001_loud_wolverine", "0002_flashy_nova", "0003_sleepy_karma"])
        #expect(folder.notes.count == 1)
        #expect(folder.notes.first?.contains("0004_draft_not_generated.sql") == true)
    }

    @Test(.freshDatabase) func foreignKeysOnExistingTablesGoInNotValidThenValidated() async throws {
        let db = try TestDatabase.current
        let lines = Lines()
        let migrator = Migrator(folder: try MigrationFolder(path: corpusFolder("v7-shop")), database: db, progress: lines.append)
        _ = try await migrator.up()
        // The DO-wrapped key on a column the same migration adds, the re-added key, and the key on an
        // existing table to a new one are validated after commit; the key on a new table is not.
        let validated = lines.all.filter { $0.hasPrefix("Validating ") }.map { $0.split(separator: " ")[1] }
        #expect(validated == ["posts_editor_id_users_id_fk", "posts_author_id_users_id_fk", "posts_category_id_categories_id_fk"])
        let cascade = try await query(db, "SELECT confdeltype::text FROM pg_constraint WHERE conname = 'posts_author_id_users_id_fk'", as: String.self)
        #expect(cascade == ["c"], "the re-added key has the new ON DELETE")
    }

    /// The failure the worst bug came from: a constraint of the same name already NOT VALID, and no record
    /// from Tally of a run under way. The migration must run whole.
    @Test(.freshDatabase) func aMigrationWithoutAProgressRecordRunsAllItsStatements() async throws {
        let db = try TestDatabase.current
        let migrator = Migrator(folder: try MigrationFolder(path: corpusFolder("v7-shop")), database: db)
        _ = try await migrator.up(to: "0001_loud_wolverine")
        try await execute(db, """
            ALTER TABLE posts DROP CONSTRAINT posts_author_id_users_id_fk;
            ALTER TABLE posts ADD CONSTRAINT posts_author_id_users_id_fk FOREIGN KEY (author_id) REFERENCES users(id) NOT VALID
            """)
        #expect(try await migrator.up(to: "0002_flashy_nova").applied == ["0002_flashy_nova"])
        let column = try await query(db, "SELECT count(*)::int FROM information_schema.columns WHERE table_name = 'posts' AND column_name = 'published_at'", as: Int.self)
        #expect(column == [1], "the ADD COLUMN of the migration ran")
        let key = try await query(db, "SELECT confdeltype::text || convalidated::text FROM pg_constraint WHERE conname = 'posts_author_id_users_id_fk'", as: String.self)
        #expect(key == ["ctrue"])
    }

    @Test(.freshDatabase) func orphansAreCountedAfterTheStatementsBeforeTheKeyAndStopTheMigration() async throws {
        let db = try TestDatabase.current
        let folder = try DrizzleFolder([
            ("0000_base", 1, """
                CREATE TABLE "users" ("id" serial PRIMARY KEY NOT NULL);
                --> statement-breakpoint
                CREATE TABLE "posts" ("id" serial PRIMARY KEY NOT NULL);
                --> statement-breakpoint
                INSERT INTO "users" DEFAULT VALUES;--> statement-breakpoint
                INSERT INTO "posts" DEFAULT VALUES;--> statement-breakpoint
                INSERT INTO "posts" DEFAULT VALUES;
                """),
            ("0001_reviewer", 2, """
                ALTER TABLE "posts" ADD COLUMN "reviewer_id" integer DEFAULT 99;--> statement-breakpoint
                ALTER TABLE "posts" ADD CONSTRAINT "posts_reviewer_id_users_id_fk" FOREIGN KEY ("reviewer_id") REFERENCES "public"."users"("id");
                """),
        ])
        defer { folder.remove() }
        let migrator = Migrator(folder: try MigrationFolder(path: folder.path), database: db)
        await #expect {
            try await migrator.up()
        } throws: { error in
            guard let error = error as? MigrateError else { return false }
            return error.message.contains("0001_reviewer") && error.message.contains("statement 2")
                && error.message.contains("2 row(s)") && error.message.contains("99") && error.message.contains("tally db orphans --clean")
        }
        let column = try await query(db, "SELECT count(*)::int FROM information_schema.columns WHERE table_name = 'posts' AND column_name = 'reviewer_id'", as: Int.self)
        #expect(column == [0], "rolled back whole")
        let status = try await migrator.status()
        #expect(status.entries.map(\.state) == [.applied, .pending])
        #expect(status.failures.first?.statement == 2)
    }

    /// `db orphans --dir` scans the keys pending migrations add to what exists now; a key on a column or table
    /// a pending migration creates is counted by `up` inside that migration instead.
    @Test(.freshDatabase) func pendingKeysOnlyOnWhatExistsNow() async throws {
        let db = try TestDatabase.current
        let migrator = Migrator(folder: try MigrationFolder(path: corpusFolder("v7-shop")), database: db)
        _ = try await migrator.up(to: "0000_keen_devos")
        let keys = try await OrphanScan.pendingForeignKeys(migrator)
        #expect(keys.map { $0.0.name ?? "" } == ["posts_author_id_users_id_fk"])
        for (key, source) in keys {
            let orphans = try await withSingleConnection(db) { connection in
                try await OrphanScan.scan(key, source: source, on: connection).orphanedRows
            }
            #expect(orphans == 0)
        }
    }

    @Test(.freshDatabase) func aNumericCreatedAtHistoryReadsAsBigint() async throws {
        let db = try TestDatabase.current
        try await execute(db, "CREATE SCHEMA drizzle; CREATE TABLE drizzle.__drizzle_migrations (id serial PRIMARY KEY, hash text NOT NULL, created_at numeric)")
        let migrator = Migrator(folder: try MigrationFolder(path: corpusFolder("v6-no-breakpoints")), database: db)
        #expect(try await migrator.up().applied.count == 2)
        #expect(try await migrator.up().applied.isEmpty)
        let status = try await migrator.status()
        #expect(status.entries.map(\.state) == [.applied, .applied])
        #expect(status.entries.map(\.createdAt) == [1712345678901, 1712449999000])
    }

    @Test func aCommentBeforeCreateIndexConcurrentlyStillRunsItOutsideATransaction() throws {
        let folder = try MigrationFolder(path: corpusFolder("v5-concurrently"))
        #expect(folder.migrations.map(\.requiresNoTransaction) == [false, true])
    }

    @Test func aParseErrorNamesFileAndLineBeforeAnythingRuns() throws {
        let folder = try DrizzleFolder([("0000_bad", 1, "CREATE TABLE a (id int);\n--> statement-breakpoint\nCREATE TABLE b (id int,, x int);")])
        defer { folder.remove() }
        #expect {
            try MigrationFolder(path: folder.path)
        } throws: { error in
            guard let error = error as? MigrateError else { return false }
            return error.message.contains("0000_bad.sql:3") && error.message.contains("syntax error at or near \",\"")
        }
    }

    @Test func aJournalForAnotherDatabaseIsRefused() throws {
        let folder = try DrizzleFolder([("0000_a", 1, "CREATE TABLE a (id int);")])
        defer { folder.remove() }
        try #"{"version": "6", "dialect": "sqlite", "entries": [{"idx": 0, "version": "6", "when": 1, "tag": "0000_a", "breakpoints": true}]}"#
            .write(toFile: folder.path + "/meta/_journal.json", atomically: true, encoding: .utf8)
        #expect {
            try MigrationFolder(path: folder.path)
        } throws: { error in
            (error as? MigrateError)?.message.contains("for sqlite, not PostgreSQL") == true
        }
    }

    @Test func invalidUTF8IsHashedAsDrizzleReadsIt() throws {
        let folder = try DrizzleFolder([("0000_a", 1, "")])
        defer { folder.remove() }
        var bytes = Data("SELECT 'caf".utf8)
        bytes.append(0xE9)  // Latin-1 é: not UTF-8
        bytes.append(contentsOf: Data("';".utf8))
        try bytes.write(to: URL(fileURLWithPath: folder.path + "/0000_a.sql"))
        let read = try MigrationFolder(path: folder.path)
        // Node's Buffer.toString() turns the bad byte into U+FFFD; Drizzle hashes that text.
        let expected = try sha256sum(Data("SELECT 'caf\u{FFFD}';".utf8))
        #expect(read.migrations.first?.hash == expected)
        #expect(read.notes.contains { $0.contains("not valid UTF-8") })
    }

    @Test(.freshDatabase) func aDrizzle0HistoryIsUpgradedForADrizzle1FolderAsDrizzle1Does() async throws {
        let db = try TestDatabase.current
        let files = try CorpusFiles(corpusFolder("v1-layout"))
        // Drizzle 0.x applied the first two (same second, so they are told apart by hash).
        try await psql(db, file: files.entries[0].file)
        try await psql(db, file: files.entries[1].file)
        try await execute(db, "CREATE SCHEMA drizzle; CREATE TABLE drizzle.__drizzle_migrations (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)")
        for (n, entry) in files.entries.prefix(2).enumerated() {
            try await execute(db, "INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES ('\(entry.sha256)', \(entry.createdAt + 100 + Int64(n)))")
        }
        let migrator = Migrator(folder: try MigrationFolder(path: corpusFolder("v1-layout")), database: db)
        #expect(try await migrator.up().applied == [files.entries[2].name])
        let rows = try await query(db, "SELECT name || ' ' || (applied_at IS NULL)::text FROM drizzle.__drizzle_migrations ORDER BY id", as: String.self)
        #expect(rows == ["\(files.entries[0].name) true", "\(files.entries[1].name) true", "\(files.entries[2].name) false"])
    }

    @Test(.freshDatabase) func aTableAnEarlierTallyReshapedGoesBackToDrizzle0sShape() async throws {
        let db = try TestDatabase.current
        let files = try CorpusFiles(corpusFolder("v6-no-breakpoints"))
        try await psql(db, file: files.entries[0].file)
        try await execute(db, """
            CREATE SCHEMA drizzle;
            CREATE TABLE drizzle.__drizzle_migrations (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint, name text, applied_at timestamptz DEFAULT now());
            INSERT INTO drizzle.__drizzle_migrations (hash, created_at, name, applied_at) VALUES ('\(files.entries[0].sha256)', \(files.entries[0].createdAt), '0000_accounts', NULL)
            """)
        let lines = Lines()
        let migrator = Migrator(folder: try MigrationFolder(path: corpusFolder("v6-no-breakpoints")), database: db, progress: lines.append)
        #expect(try await migrator.up().applied == ["0001_members_key"])
        let columns = try await query(db, "SELECT attname::text FROM pg_attribute WHERE attrelid = 'drizzle.__drizzle_migrations'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum", as: String.self)
        #expect(columns == ["id", "hash", "created_at"])
        #expect(lines.all.contains { $0.contains("back in Drizzle 0.x's shape") })
        let status = try await migrator.status()
        #expect(status.entries.map(\.state) == [.baseline, .applied], "the earlier baseline mark is kept in Tally's own table")
    }
}

// MARK: - Helpers

func corpusFolder(_ name: String) -> String {
    TestDatabase.packageRoot.appendingPathComponent("Tests/DrizzleCorpus/\(name)").path
}

/// A corpus folder's migrations as Drizzle reads them, worked out here independently of Tally's reader.
struct CorpusFiles {
    struct Entry {
        var name: String
        var file: String
        var createdAt: Int64
        var sha256: String
    }
    var entries: [Entry] = []
    var drizzle1 = false

    init(_ path: String) throws {
        let journal = path + "/meta/_journal.json"
        if let data = FileManager.default.contents(atPath: journal) {
            struct Journal: Decodable { struct Entry: Decodable { var idx: Int; var tag: String; var when: Int64 }; var entries: [Entry] }
            for entry in try JSONDecoder().decode(Journal.self, from: data).entries.sorted(by: { $0.idx < $1.idx }) {
                let file = "\(path)/\(entry.tag).sql"
                entries.append(Entry(name: entry.tag, file: file, createdAt: entry.when, sha256: try sha256sum(file: file)))
            }
        } else {
            drizzle1 = true
            let formatter = DateFormatter()
            formatter.dateFormat = "yyyyMMddHHmmss"
            formatter.timeZone = TimeZone(identifier: "UTC")
            for name in try FileManager.default.contentsOfDirectory(atPath: path).sorted() {
                let file = "\(path)/\(name)/migration.sql"
                guard FileManager.default.fileExists(atPath: file), let date = formatter.date(from: String(name.prefix(14))) else { continue }
                entries.append(Entry(name: name, file: file, createdAt: Int64(date.timeIntervalSince1970) * 1000, sha256: try sha256sum(file: file)))
            }
        }
    }
}

/// sha256sum, a checker Tally did not write; it answers at once, so the thread may wait for it.
func sha256sum(file: String) throws -> String {
    let result = try Command.run("/usr/bin/sha256sum", [file])
    return String(result.output.prefix(64))
}

func sha256sum(_ data: Data) throws -> String {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("tally-sha-\(UUID().uuidString)").path
    try data.write(to: URL(fileURLWithPath: file))
    defer { try? FileManager.default.removeItem(atPath: file) }
    return try sha256sum(file: file)
}

/// Runs a file with psql, as a person applying migrations by hand would.
func psql(_ db: ConnectionSettings, file: String) async throws {
    let result = try await Command.run(try Backup.tool("psql"), ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db.database, "-f", file], environment: db.libpqEnvironment)
    guard result.succeeded else { throw MigrateError(.migrationFailed, "psql -f \(file): \(result.output)") }
}

/// `pg_dump --schema-only` without the history and Tally's own schemas.
func schemaDump(_ db: ConnectionSettings) async throws -> String {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("tally-dump-\(UUID().uuidString).sql").path
    defer { try? FileManager.default.removeItem(atPath: file) }
    let result = try await Command.run(
        try Backup.tool("pg_dump"),
        ["--schema-only", "--no-owner", "-N", "drizzle", "-N", "tally_migrate", "-d", db.database, "-f", file],
        environment: db.libpqEnvironment)
    guard result.succeeded else { throw MigrateError(.migrationFailed, "pg_dump: \(result.output)") }
    // pg_dump 15.14+ brackets its output with \restrict / \unrestrict and a random key.
    let text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
    return text.split(separator: "\n", omittingEmptySubsequences: false)
        .filter { !$0.hasPrefix("\\restrict") && !$0.hasPrefix("\\unrestrict") }.joined(separator: "\n")
}
