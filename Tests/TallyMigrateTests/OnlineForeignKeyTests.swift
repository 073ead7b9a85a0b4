import Foundation
import PostgresNIO
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyMigrate

@Suite struct OnlineForeignKeyTests {
    /// 0000 and 0001 of the Next.js folder, with data: three credit accounts, one of a user that does not exist.
    func seed(_ db: ConnectionSettings, orphan: Bool) async throws -> Migrator {
        let lines = Lines()
        let migrator = Migrator(folder: try MigrationFolder(path: nextjsFolder), database: db) { lines.append($0) }
        _ = try await migrator.up(to: "0001_quiet_storm")
        try await execute(db, """
            INSERT INTO users (id, email) VALUES ('u1', 'a@example.com'), ('u2', 'b@example.com');
            INSERT INTO user_credits (user_id, balance) VALUES ('u1', 10), ('u2', 20);
            """)
        if orphan { try await execute(db, "INSERT INTO user_credits (user_id, balance) VALUES ('ghost', 5)") }
        return migrator
    }

    func validated(_ db: ConnectionSettings) async throws -> [Bool] {
        try await query(db, "SELECT convalidated FROM pg_constraint WHERE conname = 'user_credits_user_id_users_id_fk'", as: Bool.self)
    }

    @Test(.freshDatabase) func foreignKeyOnAFilledTableIsAddedNotValidThenValidated() async throws {
        let db = try TestDatabase.current
        _ = try await seed(db, orphan: false)
        let lines = Lines()
        let migrator = Migrator(folder: try MigrationFolder(path: nextjsFolder), database: db) { lines.append($0) }
        #expect(try await migrator.up().applied == ["0002_flashy_nova"])
        #expect(try await validated(db) == [true])
        #expect(lines.all.contains { $0.contains("go in NOT VALID and are validated after commit") })
        #expect(lines.all.contains { $0.contains("Validating user_credits_user_id_users_id_fk") })
        #expect(try await migrator.status().entries.last?.state == .applied)
    }

    @Test(.freshDatabase) func orphansStopTheMigrationBeforeAnythingChanges() async throws {
        let db = try TestDatabase.current
        let migrator = try await seed(db, orphan: true)
        await #expect {
            try await migrator.up()
        } throws: { error in
            guard let error = error as? MigrateError else { return false }
            return error.message.contains("1 row(s) violate it") && error.message.contains("ghost")
                && error.message.contains("Nothing of the migration was applied") && error.message.contains("tally db orphans --clean")
        }
        #expect(try await validated(db).isEmpty, "no constraint was added")
        let status = try await migrator.status()
        #expect(status.pending.map(\.tag) == ["0002_flashy_nova"])
        #expect(status.failures.first?.tag == "0002_flashy_nova")
    }

    @Test(.freshDatabase) func aStoppedValidationResumesFromItsRecordOnTheNextRun() async throws {
        let db = try TestDatabase.current
        let migrator = try await seed(db, orphan: false)
        _ = try await migrator.up()
        // As a run leaves it when it is killed after commit, during VALIDATE: the key in place NOT VALID and
        // Tally's record of it; meanwhile a row that breaks the key arrived (replication bypasses the check).
        let hash = try MigrationFolder(path: nextjsFolder).migration(tag: "0002_flashy_nova").hash
        try await execute(db, """
            ALTER TABLE user_credits DROP CONSTRAINT user_credits_user_id_users_id_fk;
            ALTER TABLE "user_credits" ADD CONSTRAINT "user_credits_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade NOT VALID;
            SET session_replication_role = replica;
            INSERT INTO user_credits (user_id, balance) VALUES ('ghost', 5);
            INSERT INTO tally_migrate.validations (history_table, hash, tag, position, table_schema, table_name, constraint_name)
            VALUES ('drizzle.__drizzle_migrations', '\(hash)', '0002_flashy_nova', 1, 'public', 'user_credits', 'user_credits_user_id_users_id_fk')
            """)
        let lines = Lines()
        let resuming = Migrator(folder: try MigrationFolder(path: nextjsFolder), database: db) { lines.append($0) }
        #expect(try await resuming.status().unvalidated == ["user_credits_user_id_users_id_fk on public.user_credits (migration 0002_flashy_nova)"])
        await #expect {
            try await resuming.up()
        } throws: { error in
            (error as? MigrateError)?.message.contains("is in place NOT VALID (new writes are checked), but validating it failed") == true
        }
        #expect(lines.all.contains { $0.contains("Resuming: 0002_flashy_nova is applied") })
        #expect(try await validated(db) == [false])
        let status = try await resuming.status()
        #expect(status.entries.last?.state == .applied, "the migration committed with its history row")
        #expect(status.unvalidated.count == 1)

        try await execute(db, "DELETE FROM user_credits WHERE user_id = 'ghost'")
        #expect(try await resuming.up().applied.isEmpty)
        #expect(try await validated(db) == [true])
        #expect(try await resuming.status().unvalidated.isEmpty)
    }

    @Test(.freshDatabase) func strictSQLRunsTheFileAsWritten() async throws {
        let db = try TestDatabase.current
        _ = try await seed(db, orphan: false)
        var options = Migrator.Options()
        options.strictSQL = true
        let lines = Lines()
        let migrator = Migrator(folder: try MigrationFolder(path: nextjsFolder), database: db, options: options) { lines.append($0) }
        #expect(try await migrator.up().applied == ["0002_flashy_nova"])
        #expect(!lines.all.contains { $0.contains("NOT VALID") })
        #expect(try await validated(db) == [true])
    }

    @Test func parsesForeignKeysAndCreatedTables() throws {
        func statement(_ sql: String) throws -> SQLStatement { try SQLStatement.parse(sql, startLine: 1, file: "test.sql")[0] }
        let fk = try statement(#"ALTER TABLE "user_credits" ADD CONSTRAINT "user_credits_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action"#).addedForeignKeys.first
        #expect(fk?.name == "user_credits_user_id_users_id_fk")
        #expect(fk?.table == QualifiedName(name: "user_credits"))
        #expect(fk?.columns == ["user_id"])
        #expect(fk?.referencedTable == QualifiedName(schema: "public", name: "users"))
        #expect(fk?.referencedColumns == ["id"])
        #expect(fk?.notValid == false)
        #expect(try statement("alter table only app.Orders add foreign key (customer_id) references Customers not valid").addedForeignKeys.first?.notValid == true)
        #expect(try statement("alter table only app.Orders add foreign key (customer_id) references Customers not valid").addedForeignKeys.first?.table == QualifiedName(schema: "app", name: "orders"))
        #expect(try statement("ALTER TABLE t ADD COLUMN x int").addedForeignKeys.isEmpty)
        #expect(try statement(#"CREATE TABLE IF NOT EXISTS "Teams" (id int)"#).createdTable == QualifiedName(name: "Teams"))
        #expect(try statement("create unlogged table s.t (id int)").createdTable == QualifiedName(schema: "s", name: "t"))

        // Only a statement that adds one named key and nothing else can be rewritten; DO blocks too.
        #expect(try statement("ALTER TABLE c ADD CONSTRAINT c_fk FOREIGN KEY (a_id) REFERENCES a(id)").onlineForeignKey?.rewritten.hasSuffix("\nNOT VALID") == true)
        #expect(try statement("ALTER TABLE c ADD COLUMN x int, ADD CONSTRAINT c_fk FOREIGN KEY (x) REFERENCES a(id)").onlineForeignKey == nil)
        #expect(try statement("ALTER TABLE c ADD FOREIGN KEY (x) REFERENCES a(id)").onlineForeignKey == nil, "no name to validate by")
        let wrapped = try statement("""
            DO $$ BEGIN
             ALTER TABLE "c" ADD CONSTRAINT "c_fk" FOREIGN KEY ("a_id") REFERENCES "public"."a"("id") ON DELETE cascade;
            EXCEPTION
             WHEN duplicate_object THEN null;
            END $$
            """)
        let online = try #require(wrapped.onlineForeignKey)
        #expect(online.key.name == "c_fk")
        #expect(online.rewritten.contains("ON DELETE cascade\nNOT VALID;"))
        #expect(online.rewritten.contains("WHEN duplicate_object THEN null;"))
        #expect(try statement("DO $$ BEGIN ALTER TABLE c ADD CONSTRAINT c_fk FOREIGN KEY (a_id) REFERENCES a(id); CREATE INDEX i ON c (a_id); END $$").onlineForeignKey == nil)
    }
}
