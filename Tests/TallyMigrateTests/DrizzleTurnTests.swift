import Foundation
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyMigrate

/// Drizzle's own migrators, emulated from their documented behaviour, take turns with Tally on one database,
/// in both orders: nothing runs twice, and each sees the other's history.
///
/// - Drizzle 0.x: creates `drizzle.__drizzle_migrations (id, hash, created_at)`, reads the newest
///   `created_at`, and runs every journal entry whose `when` is newer, all in one transaction, each followed
///   by its history row.
/// - Drizzle 1.0: the table has `name` and `applied_at`; a 0.x table is upgraded first (rows matched to folders
///   by `created_at` truncated to the second, else by hash; `name` set, `applied_at` NULL); pending = every
///   folder whose name is not in the table, all in one transaction.
@Suite struct DrizzleTurnTests {
    @Test(.freshDatabase) func drizzle0ThenTallyThenDrizzle0() async throws {
        let db = try TestDatabase.current
        let path = corpusFolder("v7-shop")
        let files = try CorpusFiles(path)
        try await drizzle0(db, Array(files.entries.prefix(2)))
        let tally = Migrator(folder: try MigrationFolder(path: path), database: db)
        #expect(try await tally.up().applied == ["0002_flashy_nova", "0003_sleepy_karma"])
        try await drizzle0(db, files.entries)  // would fail on CREATE TYPE or the unique emails if it re-ran anything
        #expect(try await tally.up().applied.isEmpty)
        #expect(try await historyRows(db) == files.entries.map { "\($0.sha256) \($0.createdAt)" })
    }

    @Test(.freshDatabase) func tallyThenDrizzle0ThenTally() async throws {
        let db = try TestDatabase.current
        let path = corpusFolder("v7-shop")
        let files = try CorpusFiles(path)
        let tally = Migrator(folder: try MigrationFolder(path: path), database: db)
        #expect(try await tally.up(to: "0001_loud_wolverine").applied.count == 2)
        try await drizzle0(db, files.entries)
        #expect(try await historyRows(db).count == 4)
        #expect(try await tally.up().applied.isEmpty)
        #expect(try await tally.status().entries.allSatisfy { $0.state == .applied })
        #expect(try await historyRows(db) == files.entries.map { "\($0.sha256) \($0.createdAt)" })
    }

    @Test(.freshDatabase) func drizzle1ThenTallyThenDrizzle1() async throws {
        let db = try TestDatabase.current
        let path = corpusFolder("v1-layout")
        let files = try CorpusFiles(path)
        try await drizzle1(db, Array(files.entries.prefix(2)))
        let tally = Migrator(folder: try MigrationFolder(path: path), database: db)
        #expect(try await tally.up().applied == [files.entries[2].name])
        try await drizzle1(db, files.entries)
        #expect(try await tally.up().applied.isEmpty)
        #expect(try await historyRows(db, name: true) == files.entries.map { "\($0.sha256) \($0.createdAt) \($0.name)" })
    }

    @Test(.freshDatabase) func tallyThenDrizzle1ThenTally() async throws {
        let db = try TestDatabase.current
        let path = corpusFolder("v1-layout")
        let files = try CorpusFiles(path)
        let tally = Migrator(folder: try MigrationFolder(path: path), database: db)
        #expect(try await tally.up(to: files.entries[1].name).applied.count == 2)
        try await drizzle1(db, files.entries)
        #expect(try await historyRows(db).count == 3)
        #expect(try await tally.up().applied.isEmpty)
        #expect(try await historyRows(db, name: true) == files.entries.map { "\($0.sha256) \($0.createdAt) \($0.name)" })
    }

    @Test(.freshDatabase) func drizzle0HistoryThenDrizzle1FolderWithTallyAndDrizzle1() async throws {
        let db = try TestDatabase.current
        let files = try CorpusFiles(corpusFolder("v1-layout"))
        // The 0.x app ran the first two (its journal's `when` is the folder time plus milliseconds).
        try await drizzle0(db, files.entries.prefix(2).enumerated().map { n, e in
            var entry = e
            entry.createdAt += 250 + Int64(n)
            return entry
        })
        let tally = Migrator(folder: try MigrationFolder(path: corpusFolder("v1-layout")), database: db)
        #expect(try await tally.up().applied == [files.entries[2].name])
        try await drizzle1(db, files.entries)
        #expect(try await historyRows(db).count == 3)
    }

    // MARK: - The emulated migrators

    func drizzle0(_ db: ConnectionSettings, _ entries: [CorpusFiles.Entry]) async throws {
        try await psqlScript(db, "CREATE SCHEMA IF NOT EXISTS drizzle; CREATE TABLE IF NOT EXISTS drizzle.__drizzle_migrations (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint);")
        let newest = Int64(try await psqlValue(db, "SELECT created_at FROM drizzle.__drizzle_migrations ORDER BY created_at DESC LIMIT 1"))
        var script = "BEGIN;\n"
        for entry in entries where newest == nil || newest! < entry.createdAt {
            script += try String(contentsOfFile: entry.file, encoding: .utf8) + "\n;\n"
            script += "INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES ('\(entry.sha256)', \(entry.createdAt));\n"
        }
        try await psqlScript(db, script + "COMMIT;\n")
    }

    func drizzle1(_ db: ConnectionSettings, _ entries: [CorpusFiles.Entry]) async throws {
        try await psqlScript(db, "CREATE SCHEMA IF NOT EXISTS drizzle; CREATE TABLE IF NOT EXISTS drizzle.__drizzle_migrations (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint, name text, applied_at timestamp with time zone DEFAULT now());")
        if try await psqlValue(db, "SELECT 1 FROM information_schema.columns WHERE table_schema = 'drizzle' AND table_name = '__drizzle_migrations' AND column_name = 'name'") == "" {
            var upgrade = "BEGIN; ALTER TABLE drizzle.__drizzle_migrations ADD COLUMN name text, ADD COLUMN applied_at timestamp with time zone DEFAULT now();\n"
            for line in try await psqlValue(db, "SELECT id || ' ' || hash || ' ' || created_at FROM drizzle.__drizzle_migrations ORDER BY id").split(separator: "\n") {
                let parts = line.split(separator: " ")
                let (id, hash, second) = (parts[0], String(parts[1]), Int64(parts[2])! / 1000 * 1000)
                let sameSecond = entries.filter { $0.createdAt == second }
                let match = sameSecond.count == 1 ? sameSecond[0] : (sameSecond.isEmpty ? entries : sameSecond).first { $0.sha256 == hash }
                guard let match else { throw MigrateError(.historyProblem, "drizzle 1.0 emulation: row \(id) matches no folder") }
                upgrade += "UPDATE drizzle.__drizzle_migrations SET name = '\(match.name)', applied_at = NULL WHERE id = \(id);\n"
            }
            try await psqlScript(db, upgrade + "COMMIT;\n")
        }
        let applied = Set(try await psqlValue(db, "SELECT name FROM drizzle.__drizzle_migrations").split(separator: "\n").map(String.init))
        var script = "BEGIN;\n"
        for entry in entries where !applied.contains(entry.name) {
            script += try String(contentsOfFile: entry.file, encoding: .utf8) + "\n;\n"
            script += "INSERT INTO drizzle.__drizzle_migrations (hash, created_at, name) VALUES ('\(entry.sha256)', \(entry.createdAt), '\(entry.name)');\n"
        }
        try await psqlScript(db, script + "COMMIT;\n")
    }

    func historyRows(_ db: ConnectionSettings, name: Bool = false) async throws -> [String] {
        try await psqlValue(db, "SELECT hash || ' ' || created_at\(name ? " || ' ' || name" : "") FROM drizzle.__drizzle_migrations ORDER BY id")
            .split(separator: "\n").map(String.init)
    }

    func psqlScript(_ db: ConnectionSettings, _ sql: String) async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("tally-drizzle-\(UUID().uuidString).sql").path
        try sql.write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        try await psql(db, file: file)
    }

    func psqlValue(_ db: ConnectionSettings, _ sql: String) async throws -> String {
        let result = try await Command.run(try Backup.tool("psql"), ["-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", db.database, "-c", sql], environment: db.libpqEnvironment)
        guard result.succeeded else { throw MigrateError(.migrationFailed, "psql -c: \(result.output)") }
        return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
