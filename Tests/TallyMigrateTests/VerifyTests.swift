import Foundation
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyMigrate

@Suite struct VerifyTests {
    @Test func verifyFindsDriftAndTheSeedsRedundantKey() async throws {
        try await TestDatabase.withFreshDatabase { db in
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
    }
}
