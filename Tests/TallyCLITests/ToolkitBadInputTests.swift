import Foundation
import TallyPostgres
import TallyTestSupport
import Testing

/// The database toolkit refuses bad input with a message that says what is wrong, and changes nothing.
@Suite struct ToolkitBadInputTests {
    @Test(.freshDatabase) func unknownTableOrColumnInFk() async throws {
        let db = try TestDatabase.current
        try await withSingleConnection(db) { connection in
            try await connection.execute("CREATE TABLE users (id text PRIMARY KEY)")
            try await connection.execute("CREATE TABLE user_credits (id int PRIMARY KEY, user_id text)")
        }
        let table = try await TallyProcess.run(["db", "orphans", "--fk", "user_credit.user_id=users.id", "--database-url", db.url()])
        #expect(table.status != 0)
        #expect(table.stderr.contains("unknown table public.user_credit"))
        let column = try await TallyProcess.run(["db", "orphans", "--fk", "user_credits.userid=users.id", "--database-url", db.url()])
        #expect(column.status != 0)
        #expect(column.stderr.contains("unknown column userid in table public.user_credits"))
        let shape = try await TallyProcess.run(["db", "orphans", "--fk", "user_credits", "--database-url", db.url()])
        #expect(shape.status != 0)
        #expect(shape.stderr.contains("TABLE.COLUMN=TABLE.COLUMN"))
        let include = try await TallyProcess.run(["db", "orphans", "--fk", "user_credits.user_id=users.id", "--include", "ledger.user_id", "--clean", "--yes", "--database-url", db.url()])
        #expect(include.status != 0)
        #expect(include.stderr.contains("unknown table public.ledger in --include"))
    }

    @Test(.freshDatabase) func unreadableOrDamagedBackupFile() async throws {
        let db = try TestDatabase.current
        let missing = try await TallyProcess.run(["db", "restore", "/nonexistent/x.dump", "--database-url", db.url()])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("cannot be read"))
        let damaged = FileManager.default.temporaryDirectory.appendingPathComponent("tally-damaged-\(UUID().uuidString.prefix(6)).dump").path
        defer { try? FileManager.default.removeItem(atPath: damaged) }
        try "not a dump".write(toFile: damaged, atomically: true, encoding: .utf8)
        let bad = try await TallyProcess.run(["db", "restore", damaged, "--database-url", db.url(), "--yes"])
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("is not a whole pg_dump archive"))
    }

    @Test func wrongDatabaseURL() async throws {
        let port = try LocalCluster.freePort()
        for command in [["db", "backup"], ["db", "orphans"], ["db", "verify"], ["migrate", "plan"]] {
            let result = try await TallyProcess.run(command + ["--database-url", "postgres://tally:pw-secret@127.0.0.1:\(port)/nope"])
            #expect(result.status != 0, "\(command)")
            #expect(result.stderr.contains("could not connect to postgres://tally:***@127.0.0.1:\(port)/nope"), "\(command): \(result.stderr)")
            #expect(!result.stderr.contains("pw-secret"))
        }
        let malformed = try await TallyProcess.run(["db", "backup", "--database-url", "postgres://tally@host:port/db"])
        #expect(malformed.stderr.contains("port must be a number"))
    }
}
