import Foundation
import TallyPostgres
import Testing
@testable import TallyMigrate

@Suite struct MigrationFolderTests {
    @Test func hashesEqualSha256sumOfTheFiles() throws {
        let folder = try MigrationFolder(path: nextjsFolder)
        #expect(folder.kind == .drizzle)
        #expect(folder.migrations.map(\.tag) == ["0000_bumpy_thor", "0001_quiet_storm", "0002_flashy_nova"])
        for migration in folder.migrations {
            let result = try shell("/usr/bin/sha256sum", [nextjsFolder + "/" + migration.tag + ".sql"])
            let expected = String(result.split(separator: " ").first ?? "")
            #expect(migration.hash == expected, "\(migration.tag)")
        }
        #expect(folder.migrations.map(\.createdAt) == [1760114263106, 1761915734970, 1762369692832])
        #expect(folder.migrations[2].downSQL != nil)
        #expect(folder.migrations[0].downSQL == nil)
    }

    @Test func statementsAreSplitLikePostgres() throws {
        let folder = try MigrationFolder(path: nextjsFolder)
        let first = folder.migrations[0].statements
        #expect(first.count == 4, "the DO $$ … $$ block with inner semicolons is one statement")
        #expect(first[3].text.hasPrefix("DO $$"))
        #expect(first[3].text.hasSuffix("END $$"))

        let tricky = try SQLStatement.parse("""
            -- comment; not a statement
            SELECT 'a;b', "x;y", E'it\\'s;';
            /* block; /* nested; */ */ SELECT 2;
            CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;
            SELECT $tag$ ; $tag$;
            """, startLine: 1, file: "tricky.sql")
        #expect(tricky.count == 4)
        #expect(tricky[0].text.contains("E'it\\'s;'"))
        #expect(tricky[2].text.hasSuffix("END"))
        #expect(tricky.map(\.line) == [2, 3, 4, 5])
    }

    @Test func plainFolderOrdersByNameAndUsesThePrefix() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tally-plain-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: path) }
        try "CREATE TABLE b (id int);".write(toFile: path + "/0002_b.sql", atomically: true, encoding: .utf8)
        try "CREATE TABLE a (id int);".write(toFile: path + "/0001_a.sql", atomically: true, encoding: .utf8)
        try "DROP TABLE a;".write(toFile: path + "/0001_a.down.sql", atomically: true, encoding: .utf8)
        let folder = try MigrationFolder(path: path)
        #expect(folder.kind == .plain)
        #expect(folder.migrations.map(\.tag) == ["0001_a", "0002_b"])
        #expect(folder.migrations.map(\.createdAt) == [1, 2])
        #expect(folder.migrations[0].downSQL == "DROP TABLE a;")
    }

    @Test func concurrentlyMeansNoTransaction() throws {
        let folder = try DrizzleFolder([("0000_idx", 1, "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (x);"), ("0001_plain", 2, "CREATE INDEX i2 ON t (x);")])
        defer { folder.remove() }
        let migrations = try MigrationFolder(path: folder.path).migrations
        #expect(migrations[0].requiresNoTransaction)
        #expect(!migrations[1].requiresNoTransaction)
    }

    struct BadFolder: Sendable, CustomTestStringConvertible {
        var name: String
        var setUp: @Sendable (String) throws -> Void
        var mentions: [String]
        var testDescription: String { name }
    }

    @Test(arguments: [
        BadFolder(name: "journal entry with no file", setUp: { try FileManager.default.removeItem(atPath: $0 + "/0001_b.sql") }, mentions: ["0001_b", "has no file"]),
        BadFolder(name: "duplicate tag", setUp: { path in
            try #"{"entries":[{"idx":0,"when":1,"tag":"0000_a"},{"idx":1,"when":2,"tag":"0000_a"},{"idx":2,"when":3,"tag":"0001_b"}]}"#
                .write(toFile: path + "/meta/_journal.json", atomically: true, encoding: .utf8)
        }, mentions: ["_journal.json", "tag \"0000_a\" appears twice"]),
        BadFolder(name: "duplicate idx", setUp: { path in
            try #"{"entries":[{"idx":0,"when":1,"tag":"0000_a"},{"idx":0,"when":2,"tag":"0001_b"}]}"#
                .write(toFile: path + "/meta/_journal.json", atomically: true, encoding: .utf8)
        }, mentions: ["idx 0 appears twice"]),
        BadFolder(name: "invalid JSON", setUp: { try "{ entries: [".write(toFile: $0 + "/meta/_journal.json", atomically: true, encoding: .utf8) }, mentions: ["_journal.json", "not a valid Drizzle journal"]),
        BadFolder(name: "statement the parser refuses", setUp: { path in
            try "SELECT 1;\n--> statement-breakpoint\nCREATE TABLE t (id int\n;".write(toFile: path + "/0001_b.sql", atomically: true, encoding: .utf8)
        }, mentions: ["0001_b.sql:4", "syntax error"]),
    ])
    func badFoldersAreClearErrorsNamingTheFile(_ bad: BadFolder) throws {
        let folder = try DrizzleFolder([("0000_a", 1, "SELECT 1;"), ("0001_b", 2, "SELECT 2;")])
        defer { folder.remove() }
        try bad.setUp(folder.path)
        #expect {
            try MigrationFolder(path: folder.path)
        } throws: { error in
            guard let error = error as? MigrateError, error.code == .invalidFolder else { return false }
            return bad.mentions.allSatisfy { error.message.contains($0) }
        }
    }

    @Test func unknownTagIsAClearError() throws {
        let folder = try MigrationFolder(path: nextjsFolder)
        #expect(throws: MigrateError.self) { try folder.migration(tag: "0009_nope") }
        #expect(try folder.migration(tag: "0001").tag == "0001_quiet_storm")
    }
}

/// A program's output, run as a user would.
func shell(_ executable: String, _ arguments: [String]) throws -> String {
    try Command.run(executable, arguments).output
}
