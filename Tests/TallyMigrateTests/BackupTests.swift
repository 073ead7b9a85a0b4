import Foundation
import PostgresNIO
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyMigrate

@Suite struct BackupTests {
    func temporaryFile(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("tally-backup-\(UUID().uuidString.prefix(8))-\(name)").path
    }

    func fill(_ db: ConnectionSettings) async throws {
        _ = try await Migrator(folder: try MigrationFolder(path: nextjsFolder), database: db).up()
        try await execute(db, "INSERT INTO users (id, email) VALUES ('u1', 'a@example.com'), ('u2', 'b@example.com')")
    }

    /// `tally migrate up`'s backup, as a library call: taken when something is pending, not when nothing is.
    @Test(.freshDatabase) func upBacksUpBeforeApplyingOnlyWhenSomethingIsPending() async throws {
        let directory = temporaryFile("dir")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let db = try TestDatabase.current
        let migrator = Migrator(folder: try MigrationFolder(path: nextjsFolder), database: db)
        let applied = try await migrator.up(backup: .into(directory: directory))
        #expect(!applied.applied.isEmpty)
        let dumps = try FileManager.default.contentsOfDirectory(atPath: directory)
        #expect(dumps.count == 1, "\(dumps)")
        #expect(try await Backup.verify(directory + "/" + dumps[0]) > 0)
        let again = try await migrator.up(backup: .into(directory: directory))
        #expect(again.applied.isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).count == 1, "nothing pending, no backup")
    }

    @Test func backupThenRestoreIntoAnEmptyDatabase() async throws {
        let path = temporaryFile("a.dump")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try await TestDatabase.withFreshDatabase { source in
            try await fill(source)
            let result = try await Backup.create(source, to: path)
            #expect(result.path == path)
            #expect(result.entries > 5)
            #expect(result.bytes > 0)
            #expect(try await Backup.verify(path) == result.entries)
        }
        try await TestDatabase.withFreshDatabase { target in
            let restored = try await Backup.restore(path, into: target, replace: false)
            #expect(restored.targetBackup == nil)
            #expect(try await query(target, "SELECT id FROM users ORDER BY id", as: String.self) == ["u1", "u2"])
            // The history came along: nothing is pending.
            #expect(try await Migrator(folder: try MigrationFolder(path: nextjsFolder), database: target).status().pending.isEmpty)
        }
    }

    @Test(.freshDatabase) func restoreOverAFilledDatabaseNeedsConsentAndBacksItUpFirst() async throws {
        let path = temporaryFile("b.dump")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let db = try TestDatabase.current
        try await fill(db)
        _ = try await Backup.create(db, to: path)
        try await execute(db, "DELETE FROM users WHERE id = 'u2'; INSERT INTO users (id, email) VALUES ('u3', 'c@example.com')")

        await #expect {
            try await Backup.restore(path, into: db, replace: false)
        } throws: { error in
            (error as? MigrateError)?.code == .confirmationRequired && (error as? MigrateError)?.message.contains("--yes") == true
        }
        #expect(try await query(db, "SELECT id FROM users ORDER BY id", as: String.self) == ["u1", "u3"], "nothing changed")

        let result = try await Backup.restore(path, into: db, replace: true)
        let before = try #require(result.targetBackup)
        defer { try? FileManager.default.removeItem(atPath: before.path) }
        #expect(FileManager.default.fileExists(atPath: before.path))
        #expect(try await query(db, "SELECT id FROM users ORDER BY id", as: String.self) == ["u1", "u2"])
    }

    @Test(.freshDatabase) func unreadableOrDamagedFilesAreClearErrors() async throws {
        await #expect { try await Backup.verify("/nonexistent/backup.dump") } throws: {
            ($0 as? MigrateError)?.message.contains("cannot be read") == true
        }
        let damaged = temporaryFile("damaged.dump")
        defer { try? FileManager.default.removeItem(atPath: damaged) }
        try Data("PGDMP but not really".utf8).write(to: URL(fileURLWithPath: damaged))
        await #expect { try await Backup.verify(damaged) } throws: {
            ($0 as? MigrateError)?.message.contains("is not a whole pg_dump archive") == true
        }
        let db = try TestDatabase.current
        await #expect(throws: MigrateError.self) { try await Backup.restore(damaged, into: db, replace: true) }
    }

    @Test func anOlderPgDumpThanTheServerIsAClearError() throws {
        #expect { try Backup.checkVersions(pgDump: 15, server: 16, path: "/usr/bin/pg_dump") } throws: {
            ($0 as? MigrateError)?.message.contains("install postgresql-client-16".replacingOccurrences(of: "install", with: "Install")) == true
        }
        try Backup.checkVersions(pgDump: 16, server: 15, path: "/usr/bin/pg_dump")
    }
}
