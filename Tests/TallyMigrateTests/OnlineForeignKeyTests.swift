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

    @Test func foreignKeyOnAFilledTableIsAddedNotValidThenValidated() async throws {
        try await TestDatabase.withFreshDatabase { db in
            _ = try await seed(db, orphan: false)
            let lines = Lines()
            let migrator = Migrator(folder: try MigrationFolder(path: nextjsFolder), database: db) { lines.append($0) }
            #expect(try await migrator.up().applied == ["0002_flashy_nova"])
            #expect(try await validated(db) == [true])
            #expect(lines.all.contains { $0.contains("added NOT VALID, validated after") })
            #expect(lines.all.contains { $0.contains("Validating user_credits_user_id_users_id_fk") })
            #expect(try await migrator.status().entries.last?.state == .applied)
        }
    }

    @Test func orphansStopTheMigrationBeforeAnythingChanges() async throws {
        try await TestDatabase.withFreshDatabase { db in
            let migrator = try await seed(db, orphan: true)
            await #expect {
                try await migrator.up()
            } throws: { error in
                guard let error = error as? MigrateError else { return false }
                return error.message.contains("1 row(s) violate it") && error.message.contains("ghost")
                    && error.message.contains("Nothing was applied") && error.message.contains("tally db orphans --clean")
            }
            #expect(try await validated(db).isEmpty, "no constraint was added")
            let status = try await migrator.status()
            #expect(status.pending.map(\.tag) == ["0002_flashy_nova"])
            #expect(status.failures.first?.tag == "0002_flashy_nova")
        }
    }

    @Test func aStoppedValidationResumesOnTheNextRun() async throws {
        try await TestDatabase.withFreshDatabase { db in
            let migrator = try await seed(db, orphan: true)
            // As if a run added the key NOT VALID and then met an orphan while validating.
            try await execute(db, #"ALTER TABLE "user_credits" ADD CONSTRAINT "user_credits_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade NOT VALID"#)
            await #expect {
                try await migrator.up()
            } throws: { error in
                (error as? MigrateError)?.message.contains("was added NOT VALID (new writes are checked) but validating it failed") == true
            }
            #expect(try await validated(db) == [false])
            #expect(try await migrator.status().pending.map(\.tag) == ["0002_flashy_nova"], "no history row until valid")

            try await execute(db, "DELETE FROM user_credits WHERE user_id = 'ghost'")
            #expect(try await migrator.up().applied == ["0002_flashy_nova"])
            #expect(try await validated(db) == [true])
        }
    }

    @Test func strictSQLRunsTheFileAsWritten() async throws {
        try await TestDatabase.withFreshDatabase { db in
            _ = try await seed(db, orphan: false)
            var options = Migrator.Options()
            options.strictSQL = true
            let lines = Lines()
            let migrator = Migrator(folder: try MigrationFolder(path: nextjsFolder), database: db, options: options) { lines.append($0) }
            #expect(try await migrator.up().applied == ["0002_flashy_nova"])
            #expect(!lines.all.contains { $0.contains("NOT VALID") })
            #expect(try await validated(db) == [true])
        }
    }

    @Test func parsesForeignKeysAndCreatedTables() {
        let fk = DDL.addedForeignKey(in: #"ALTER TABLE "user_credits" ADD CONSTRAINT "user_credits_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action"#)
        #expect(fk?.name == "user_credits_user_id_users_id_fk")
        #expect(fk?.table == QualifiedName(name: "user_credits"))
        #expect(fk?.columns == ["user_id"])
        #expect(fk?.referencedTable == QualifiedName(schema: "public", name: "users"))
        #expect(fk?.referencedColumns == ["id"])
        #expect(fk?.notValid == false)
        #expect(DDL.addedForeignKey(in: "alter table only app.Orders add foreign key (customer_id) references Customers not valid")?.notValid == true)
        #expect(DDL.addedForeignKey(in: "ALTER TABLE t ADD COLUMN x int") == nil)
        #expect(DDL.createdTable(in: #"CREATE TABLE IF NOT EXISTS "Teams" (id int)"#) == QualifiedName(name: "Teams"))
        #expect(DDL.createdTable(in: "create unlogged table s.t (id int)") == QualifiedName(schema: "s", name: "t"))

        // Created in the same migration: plain; on an existing table: online.
        let migration = Migration(index: 0, tag: "x", createdAt: 0, hash: "", sql: "", chunks: [
            "CREATE TABLE a (id int primary key); ALTER TABLE a ADD CONSTRAINT a_fk FOREIGN KEY (id) REFERENCES b(id); ALTER TABLE c ADD CONSTRAINT c_fk FOREIGN KEY (a_id) REFERENCES a(id);"
        ])
        #expect(Migrator.onlineForeignKeys(migration).mapValues(\.name) == [2: "c_fk"])
    }
}
