import Foundation
import PostgresNIO
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyMigrate

@Suite struct MigratorTests {
    @Test(.freshDatabase) func aDrizzleFolderAppliedTwiceChangesNothingTheSecondTime() async throws {
        let db = try TestDatabase.current
        let folder = try MigrationFolder(path: nextjsFolder)
        let migrator = Migrator(folder: folder, database: db)
        let first = try await migrator.up()
        #expect(first.applied == ["0000_bumpy_thor", "0001_quiet_storm", "0002_flashy_nova"])
        #expect(first.report.entries.allSatisfy { $0.state == .applied })

        let second = try await migrator.up()
        #expect(second.applied.isEmpty)
        #expect(second.report.isConsistent)

        // The history is byte-for-byte what Drizzle's migrator writes: hash and created_at from the files.
        let hashes = try await query(db, "SELECT hash FROM drizzle.__drizzle_migrations ORDER BY id", as: String.self)
        let createdAt = try await query(db, "SELECT created_at FROM drizzle.__drizzle_migrations ORDER BY id", as: Int64.self)
        #expect(hashes == folder.migrations.map(\.hash))
        #expect(createdAt == folder.migrations.map(\.createdAt))
        let fks = try await query(db, "SELECT conname::text FROM pg_constraint WHERE conrelid = 'user_credits'::regclass AND contype = 'f' ORDER BY 1", as: String.self)
        #expect(fks == ["user_credits_team_id_teams_id_fk", "user_credits_user_id_users_id_fk"])
    }

    @Test(.freshDatabase) func aFailureAtStatement3Of5LeavesNoTraceAndIsReported() async throws {
        let db = try TestDatabase.current
        let folder = try DrizzleFolder([
            ("0000_ok", 1, "CREATE TABLE base (id int PRIMARY KEY);"),
            ("0001_broken", 2, """
                CREATE TABLE one (id int);
                --> statement-breakpoint
                INSERT INTO base VALUES (1);
                --> statement-breakpoint
                INSERT INTO base VALUES (1);
                --> statement-breakpoint
                CREATE TABLE four (id int);
                --> statement-breakpoint
                CREATE TABLE five (id int);
                """),
        ])
        defer { folder.remove() }
        let migrator = Migrator(folder: try MigrationFolder(path: folder.path), database: db)
        await #expect {
            try await migrator.up()
        } throws: { error in
            guard let error = error as? MigrateError, error.code == .migrationFailed else { return false }
            return error.message.contains("0001_broken") && error.message.contains("statement 3 of 5")
                && error.message.contains("duplicate key") && error.message.contains("rolled back")
        }
        #expect(try await tableExists(db, "base"), "the migration before it stays applied")
        #expect(try await !tableExists(db, "one"))
        #expect(try await query(db, "SELECT count(*)::int FROM base", as: Int.self) == [0])

        let status = try await migrator.status()
        #expect(status.entries.map(\.state) == [.applied, .pending])
        #expect(status.failures.first?.tag == "0001_broken")
        #expect(status.failures.first?.statement == 3)

        // Fixed and run again: applied, and the failure is gone.
        try folder.write([("0000_ok", 1, "CREATE TABLE base (id int PRIMARY KEY);"), ("0001_broken", 2, "CREATE TABLE one (id int);")])
        let fixed = Migrator(folder: try MigrationFolder(path: folder.path), database: db)
        #expect(try await fixed.up().applied == ["0001_broken"])
        #expect(try await fixed.status().failures.isEmpty)
    }

    @Test(.freshDatabase) func anEditedFileAndHandTypedHashesAreReportedThenRepaired() async throws {
        let db = try TestDatabase.current
        let folder = try DrizzleFolder([
            ("0000_a", 1_000, "CREATE TABLE a (id int);"),
            ("0001_b", 2_000, "CREATE TABLE b (id int);"),
        ])
        defer { folder.remove() }
        _ = try await Migrator(folder: try MigrationFolder(path: folder.path), database: db).up()

        // The file of an applied migration is edited, and someone types history rows by hand (the seed's Step 4).
        try folder.write([
            ("0000_a", 1_000, "CREATE TABLE a (id int); -- edited"),
            ("0001_b", 2_000, "CREATE TABLE b (id int);"),
        ])
        try await execute(db, """
            INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES
            ('e3c7a8f2c09fc8ad3e0d5b64f1a8e7c4b2f9a8e1d0c5b3a4f2e8d7c6b5a4e3f2', 1762369692832)
            """)
        let migrator = Migrator(folder: try MigrationFolder(path: folder.path), database: db)
        let status = try await migrator.status()
        #expect(status.entries.map(\.state) == [.changed, .applied])
        #expect(status.unknownRows.map(\.hash) == ["e3c7a8f2c09fc8ad3e0d5b64f1a8e7c4b2f9a8e1d0c5b3a4f2e8d7c6b5a4e3f2"])
        #expect(!status.isConsistent)
        await #expect(throws: MigrateError.self) { try await migrator.up() }

        // Repair without confirmation changes nothing.
        let preview = try await migrator.repair(apply: false)
        #expect(preview.rewrites.map(\.tag) == ["0000_a"])
        #expect(preview.removed.count == 1)
        #expect(try await !migrator.status().isConsistent)

        let repaired = try await migrator.repair(apply: true)
        #expect(repaired.applied)
        let after = try await migrator.status()
        #expect(after.isConsistent)
        #expect(after.entries.map(\.state) == [.applied, .applied])
        // The removed row is kept, restorable.
        #expect(try await query(db, "SELECT hash FROM tally_migrate.removed_history_rows", as: String.self)
            == ["e3c7a8f2c09fc8ad3e0d5b64f1a8e7c4b2f9a8e1d0c5b3a4f2e8d7c6b5a4e3f2"])
    }

    @Test(.freshDatabase) func aPendingMigrationOlderThanTheNewestAppliedIsFoundAndApplied() async throws {
        let db = try TestDatabase.current
        let folder = try DrizzleFolder([("0000_a", 1_000, "CREATE TABLE a (id int);"), ("0002_c", 3_000, "CREATE TABLE c (id int);")])
        defer { folder.remove() }
        _ = try await Migrator(folder: try MigrationFolder(path: folder.path), database: db).up()

        // A branch merged later brings a migration dated between the two.
        try folder.write([
            ("0000_a", 1_000, "CREATE TABLE a (id int);"),
            ("0001_b", 2_000, "CREATE TABLE b (id int);"),
            ("0002_c", 3_000, "CREATE TABLE c (id int);"),
        ])
        let migrator = Migrator(folder: try MigrationFolder(path: folder.path), database: db)
        let status = try await migrator.status()
        let pending = try #require(status.pending.first)
        #expect(pending.tag == "0001_b")
        #expect(pending.olderThanNewestApplied)
        #expect(status.isConsistent)
        // CI's check (`tally migrate validate`): fine as is, not with --strict.
        #expect(status.isValid(strict: false))
        #expect(!status.isValid(strict: true))
        #expect(try await migrator.up().applied == ["0001_b"])
        #expect(try await migrator.status().isValid(strict: true))
        #expect(try await tableExists(db, "b"))
    }

    @Test(.freshDatabase) func baselineRefusesWhenObjectsAreMissingAndMarksWhenTheyExist() async throws {
        let db = try TestDatabase.current
        let folder = try MigrationFolder(path: nextjsFolder)
        // The seed's production state: 0000 and 0001 applied by hand, partly.
        try await execute(db, try String(contentsOfFile: nextjsFolder + "/0000_bumpy_thor.sql", encoding: .utf8))
        let migrator = Migrator(folder: folder, database: db)
        await #expect {
            try await migrator.baseline(through: "0001_quiet_storm")
        } throws: { error in
            guard let error = error as? MigrateError, error.code == .baselineRefused else { return false }
            return error.message.contains("table public.credit_transactions") && error.message.contains("index public.credit_transactions_user_id_idx")
        }
        #expect(try await migrator.status().entries.allSatisfy { $0.state == .pending }, "nothing was written")

        try await execute(db, try String(contentsOfFile: nextjsFolder + "/0001_quiet_storm.sql", encoding: .utf8))
        let result = try await migrator.baseline(through: "0001_quiet_storm")
        #expect(result.marked == ["0000_bumpy_thor", "0001_quiet_storm"])
        let again = try await migrator.baseline(through: "0001")
        #expect(again.marked.isEmpty)
        #expect(again.alreadyApplied == ["0000_bumpy_thor", "0001_quiet_storm"])

        let status = try await migrator.status()
        #expect(status.entries.map(\.state) == [.baseline, .baseline, .pending])
        // Drizzle sees the same hashes it would have written.
        let hashes = try await query(db, "SELECT hash FROM drizzle.__drizzle_migrations ORDER BY id", as: String.self)
        #expect(hashes == folder.migrations.prefix(2).map(\.hash))
        #expect(try await migrator.up().applied == ["0002_flashy_nova"])
    }

    @Test(.freshDatabase) func aLockHeldElsewhereMakesUpWaitRetryThenFailClearly() async throws {
        let db = try TestDatabase.current
        let folder = try DrizzleFolder([
            ("0000_t", 1, "CREATE TABLE t (id int);"),
            ("0001_alter", 2, "ALTER TABLE t ADD COLUMN note text;"),
        ])
        defer { folder.remove() }
        var options = Migrator.Options()
        options.lockTimeout = .milliseconds(200)
        options.lockRetries = 2
        options.retryBackoff = .milliseconds(100)
        let lines = Lines()
        let migrator = Migrator(folder: try MigrationFolder(path: folder.path), database: db, options: options) { lines.append($0) }
        _ = try await migrator.up(to: "0000_t")

        // Another session holds the table.
        try await withSingleConnection(db) { holder in
            try await holder.run("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
            await #expect {
                try await migrator.up()
            } throws: { error in
                guard let error = error as? MigrateError, error.code == .lockTimeout else { return false }
                return error.message.contains("0001_alter") && error.message.contains("3 attempt(s)") && error.message.contains("pg_stat_activity")
            }
            #expect(lines.all.filter { $0.contains("retry") }.count == 2)

            // Released while the runner waits: the retry succeeds.
            async let released: Void = {
                try await Task.sleep(for: .milliseconds(300))
                try await holder.run("COMMIT")
            }()
            var patient = options
            patient.lockRetries = 5
            let waiting = Migrator(folder: try MigrationFolder(path: folder.path), database: db, options: patient)
            #expect(try await waiting.up().applied == ["0001_alter"])
            try await released
        }
    }

    @Test(.freshDatabase) func concurrentlyRunsOutsideATransactionWithTheHistoryRowLast() async throws {
        let db = try TestDatabase.current
        let folder = try DrizzleFolder([
            ("0000_t", 1, "CREATE TABLE t (id int);"),
            ("0001_idx", 2, "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_id_idx ON t (id);"),
        ])
        defer { folder.remove() }
        let migrator = Migrator(folder: try MigrationFolder(path: folder.path), database: db)
        #expect(try await migrator.up().applied == ["0000_t", "0001_idx"])
        #expect(try await query(db, "SELECT indexname::text FROM pg_indexes WHERE tablename = 't'", as: String.self) == ["t_id_idx"])
    }

    @Test(.freshDatabase) func downRevertsWithDownFilesAndRefusesWithoutThem() async throws {
        let db = try TestDatabase.current
        let migrator = Migrator(folder: try MigrationFolder(path: nextjsFolder), database: db)
        _ = try await migrator.up()
        let reverted = try await migrator.down()
        #expect(reverted.reverted == ["0002_flashy_nova"])
        let fks = try await query(db, "SELECT conname::text FROM pg_constraint WHERE conname = 'user_credits_user_id_users_id_fk'", as: String.self)
        #expect(fks.isEmpty)
        #expect(try await migrator.status().pending.map(\.tag) == ["0002_flashy_nova"])

        await #expect {
            try await migrator.down(to: "0000_bumpy_thor")
        } throws: { error in
            (error as? MigrateError)?.code == .noDownFile && (error as? MigrateError)?.message.contains("0001_quiet_storm") == true
        }
        #expect(try await tableExists(db, "credit_transactions"), "nothing changed")
    }

    @Test(.freshDatabase) func repairOfTheSeedsHandTypedHistoryRewritesWhatRanAndReopensWhatDidNot() async throws {
        let db = try TestDatabase.current
        // Production as the seed found it: 0000 and 0001 applied by hand, 0002's foreign key never added,
        // and Step 4's history rows typed in with hashes that match no file.
        for file in ["0000_bumpy_thor", "0001_quiet_storm"] {
            try await execute(db, try String(contentsOfFile: nextjsFolder + "/\(file).sql", encoding: .utf8))
        }
        try await execute(db, """
            CREATE TABLE IF NOT EXISTS __drizzle_migrations (id SERIAL PRIMARY KEY, hash TEXT NOT NULL, created_at BIGINT);
            INSERT INTO __drizzle_migrations (hash, created_at) VALUES
                ('0baa8af38816a34b1e4470ba4ee5a49a5e0e4a8c1d5e1fde83f26f2b1be57c4b', 1760114263106),
                ('38f04f0b6c736ed30fee6e7d77f08e97c3f2a4f0dc85f5426a3b5bd1dd859f53', 1761915734970),
                ('e3c7a8f2c09fc8ad3e0d5b64f1a8e7c4b2f9a8e1d0c5b3a4f2e8d7c6b5a4e3f2', 1762369692832)
            ON CONFLICT DO NOTHING;
            """)
        let migrator = Migrator(
            folder: try MigrationFolder(path: nextjsFolder), database: db,
            historyTable: try HistoryTable(parsing: "public.__drizzle_migrations"))
        #expect(try await migrator.status().changed.count == 3)

        let preview = try await migrator.repair(apply: false)
        #expect(preview.rewrites.map(\.tag) == ["0000_bumpy_thor", "0001_quiet_storm"])
        #expect(preview.notApplied.map(\.tag) == ["0002_flashy_nova"])
        #expect(preview.notApplied.first?.missing == ["constraint public.user_credits.user_credits_user_id_users_id_fk"])

        _ = try await migrator.repair(apply: true)
        let status = try await migrator.status()
        #expect(status.entries.map(\.state) == [.applied, .applied, .pending])
        #expect(try await migrator.up().applied == ["0002_flashy_nova"])
    }

    @Test(.freshDatabase) func historyTablesInOtherSchemasAreReported() async throws {
        let db = try TestDatabase.current
        try await execute(db, """
            CREATE TABLE public.__drizzle_migrations (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint);
            INSERT INTO public.__drizzle_migrations (hash, created_at) VALUES ('0baa8af38816a34b1e4470ba4ee5a49a5e0e4a8c1d5e1fde83f26f2b1be57c4b', 1760114263106);
            """)
        let migrator = Migrator(folder: try MigrationFolder(path: nextjsFolder), database: db)
        let status = try await migrator.status()
        #expect(status.otherHistoryTables.map(\.table) == ["public.__drizzle_migrations"])
        #expect(status.otherHistoryTables.first?.rows == 1)

        // Pointed at it, the hand-typed row is "changed" (matched by created_at, hash differs).
        let seedHistory = Migrator(folder: try MigrationFolder(path: nextjsFolder), database: db, historyTable: try HistoryTable(parsing: "public.__drizzle_migrations"))
        let seedStatus = try await seedHistory.status()
        #expect(seedStatus.entries.first?.state == .changed)
    }
}
