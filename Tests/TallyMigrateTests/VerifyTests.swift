import Foundation
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyMigrate

@Suite struct VerifyTests {
    @Test(.freshDatabase) func verifyFindsDriftAndTheSeedsRedundantKey() async throws {
        let db = try TestDatabase.current
        let folder = try MigrationFolder(path: nextjsFolder)
        _ = try await Migrator(folder: folder, database: db).up()
        let clean = try await SchemaVerify.verify(db, against: folder, historyTable: .drizzleDefault)
        #expect(clean.differences.isEmpty)
        #expect(!clean.findings.contains { $0.kind == "redundant-foreign-key" })

        try await execute(db, """
            ALTER TABLE user_credits ADD CONSTRAINT user_credits_team_id_fkey FOREIGN KEY (team_id) REFERENCES teams(id);
            ALTER TABLE users ALTER COLUMN name SET DEFAULT 'anon';
            ALTER TABLE user_credits DROP CONSTRAINT user_credits_user_id_users_id_fk;
            ALTER TABLE user_credits ADD CONSTRAINT user_credits_user_id_users_id_fk FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE NOT VALID;
            CREATE TABLE extra_table (id int);
            """)
        let drift = try await SchemaVerify.verify(db, against: folder, historyTable: .drizzleDefault)
        let byObject = Dictionary(uniqueKeysWithValues: drift.differences.map { ($0.object, $0.kind) })
        #expect(byObject["constraint public.user_credits.user_credits_team_id_fkey"] == "extra")
        #expect(byObject["column public.users.name"] == "changed")
        #expect(byObject["constraint public.user_credits.user_credits_user_id_users_id_fk"] == "changed")
        #expect(byObject["table public.extra_table"] == "extra")
        let kinds = drift.findings.map(\.kind)
        #expect(kinds.contains("redundant-foreign-key"))
        #expect(kinds.contains("not-valid-constraint"))
        #expect(kinds.contains("unindexed-foreign-key"))
        #expect(drift.findings.first { $0.kind == "redundant-foreign-key" }?.message.contains("user_credits_team_id_fkey and user_credits_team_id_teams_id_fk") == true)
    }

    /// The scratch database gets the live database's extensions and a history table; pending migrations are
    /// not drift.
    @Test(.freshDatabase) func verifyUsesLiveExtensionsAndComparesOnlyAppliedMigrations() async throws {
        let db = try TestDatabase.current
        let folder = try DrizzleFolder([
            // The extension was created by hand on the server, as hosted databases often have it.
            ("0000_emails", 1, #"CREATE TABLE "contacts" ("id" serial PRIMARY KEY NOT NULL, "email" citext NOT NULL);"#),
            // A migration that cleans the history (a team's squash) runs on the scratch database too.
            ("0001_history_cleanup", 2, "DELETE FROM drizzle.__drizzle_migrations WHERE created_at < 0;"),
            ("0002_pending", 3, #"CREATE TABLE "later" ("id" integer);"#),
        ])
        defer { folder.remove() }
        try await execute(db, "CREATE EXTENSION citext")
        let migrations = try MigrationFolder(path: folder.path)
        _ = try await Migrator(folder: migrations, database: db).up(to: "0001_history_cleanup")
        let lines = Lines()
        let result = try await SchemaVerify.verify(db, against: migrations, historyTable: .drizzleDefault, progress: lines.append)
        #expect(result.differences.isEmpty, "\(result.differences)")
        #expect(lines.all.contains { $0.contains("2 applied migration(s)") && $0.contains("1 pending, not compared") })
    }

    @Test(.freshDatabase) func verifyReportsAnInvalidIndex() async throws {
        let db = try TestDatabase.current
        let folder = try MigrationFolder(path: nextjsFolder)
        _ = try await Migrator(folder: folder, database: db).up()
        // An index whose build failed stays behind INVALID, as an interrupted CONCURRENTLY build leaves it.
        try await execute(db, "INSERT INTO users (id, email, name) VALUES ('a', 'a@example.com', 'Ada'), ('b', 'b@example.com', 'Ada')")
        await #expect(throws: (any Error).self) {
            try await withSingleConnection(db) { try await $0.run("CREATE UNIQUE INDEX CONCURRENTLY users_name_unique ON users (name)") }
        }
        let result = try await SchemaVerify.verify(db, against: folder, historyTable: .drizzleDefault)
        #expect(result.findings.contains { $0.kind == "invalid-index" && $0.message.contains("public.users_name_unique") })
        #expect(try await Migrator(folder: folder, database: db).status().invalidIndexes == ["public.users_name_unique"])
    }
}
