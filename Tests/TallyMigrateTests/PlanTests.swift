import Foundation
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyMigrate

@Suite struct PlanTests {
    @Test(.freshDatabase) func planShowsLocksLintAndOrphansAndChangesNothing() async throws {
        let db = try TestDatabase.current
        let longName = String(repeating: "x", count: 70)
        let folder = try DrizzleFolder([
            ("0000_base", 1, """
                CREATE TABLE accounts (id int PRIMARY KEY, owner text);
                CREATE TABLE owners (id text PRIMARY KEY);
                CREATE TABLE old_things (id int);
                """),
            ("0001_risky", 2, """
                CREATE INDEX accounts_owner_idx ON accounts (owner);
                --> statement-breakpoint
                ALTER TABLE accounts ALTER COLUMN owner SET NOT NULL;
                --> statement-breakpoint
                ALTER TABLE accounts ADD COLUMN plan text NOT NULL;
                --> statement-breakpoint
                ALTER TABLE accounts ALTER COLUMN id TYPE bigint;
                --> statement-breakpoint
                ALTER TABLE accounts DROP COLUMN legacy;
                --> statement-breakpoint
                DROP TABLE old_things;
                --> statement-breakpoint
                CREATE TABLE "\(longName)" (id int);
                --> statement-breakpoint
                ALTER TABLE accounts ADD CONSTRAINT accounts_owner_fk FOREIGN KEY (owner) REFERENCES owners(id);
                """),
        ])
        defer { folder.remove() }
        var options = Migrator.Options()
        options.strictSQL = true
        let migrator = Migrator(folder: try MigrationFolder(path: folder.path), database: db, options: options)
        _ = try await migrator.up(to: "0000_base")
        try await execute(db, "INSERT INTO owners VALUES ('o1'); INSERT INTO accounts VALUES (1, 'o1'), (2, 'nobody'), (3, 'ghost'); INSERT INTO old_things VALUES (1), (2)")

        let plan = try await migrator.plan()
        let risky = try #require(plan.migrations.first)
        #expect(risky.tag == "0001_risky")
        let rules = Set(risky.statements.flatMap(\.findings).map(\.rule))
        for rule: LintRule.Name in [.requireConcurrentIndexCreation, .addingNotNullableField, .addingRequiredField, .changingColumnType,
                                    .banDropColumn, .banDropTable, .identifierTooLong, .addingForeignKeyConstraint, .requireLockTimeout,
                                    .requireStatementTimeout] {
            #expect(rules.contains(rule), "\(rule)")
        }
        // Judged against the live tables: the rows, the lock and what it blocks.
        let index = try #require(risky.statements[0].findings.first { $0.rule == .requireConcurrentIndexCreation })
        #expect(index.rows == 3 && index.table == "public.accounts")
        #expect(index.message.contains("accounts (3 rows)") && index.message.contains("SHARE") && index.message.contains("every write"), "\(index.message)")
        let dropped = try #require(risky.statements[5].findings.first { $0.rule == .banDropTable })
        #expect(dropped.message.contains("old_things (2 rows)"), "\(dropped.message)")
        #expect(risky.statements[0].locks.first?.mode == .share)
        #expect(risky.statements[7].locks.map(\.mode) == [.shareRowExclusive, .shareRowExclusive])
        #expect(risky.statements[7].locks[0].effect.contains("scanned"))
        let key = try #require(risky.foreignKeys.first)
        #expect(key.orphanedRows == 2)
        #expect(key.sampleKeys == ["ghost", "nobody"])
        #expect(plan.blocked)
        #expect(try await migrator.status().pending.map(\.tag) == ["0001_risky"], "plan changed nothing")
    }
}
