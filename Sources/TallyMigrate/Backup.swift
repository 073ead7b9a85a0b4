import Foundation
import PostgresNIO
import TallyPostgres

/// `pg_dump -Fc` backups, checked after writing with `pg_restore --list`, and restores with `pg_restore`.
public enum Backup {
    public struct Result: Sendable, Codable {
        public var path: String
        public var bytes: Int
        /// Entries in the archive's table of contents (tables, data, constraints, …).
        public var entries: Int
        public var seconds: Double
    }

    public struct RestoreResult: Sendable, Codable {
        public var path: String
        public var database: String
        /// The backup of the target taken before restoring over it, when it was not empty.
        public var targetBackup: Result?
    }

    /// `.tally/backups/<database>-<UTC timestamp>.dump`, with `-2`, `-3`… when that name is taken.
    public static func defaultPath(for database: String, in directory: String = ".tally/backups") -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        formatter.timeZone = TimeZone(identifier: "UTC")
        let base = "\(directory)/\(database)-\(formatter.string(from: Date()))"
        var path = base + ".dump"
        var n = 2
        while FileManager.default.fileExists(atPath: path) {
            path = "\(base)-\(n).dump"
            n += 1
        }
        return path
    }

    /// Dumps `database` to `path` and checks the file reads back as a whole archive.
    public static func create(_ database: ConnectionSettings, to path: String? = nil) async throws -> Result {
        let start = ContinuousClock.now
        let pgDump = try tool("pg_dump")
        try await checkVersion(pgDump, against: database)
        let target = URL(fileURLWithPath: path ?? defaultPath(for: database.database)).standardizedFileURL.path
        guard !FileManager.default.fileExists(atPath: target) else {
            throw MigrateError(.invalidFolder, "\(target) already exists; Tally does not overwrite backups. Choose another --out, or move that file away.")
        }
        try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let partial = target + ".partial-\(ProcessInfo.processInfo.processIdentifier)"
        let result = try await Command.run(pgDump, ["-Fc", "-f", partial], environment: database.libpqEnvironment)
        guard result.succeeded else {
            try? FileManager.default.removeItem(atPath: partial)
            throw MigrateError(.migrationFailed, "pg_dump failed: \(result.output.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        let entries: Int
        do {
            entries = try await verify(partial)
            try FileManager.default.moveItem(atPath: partial, toPath: target)
        } catch {
            try? FileManager.default.removeItem(atPath: partial)
            throw error
        }
        let bytes = (try? FileManager.default.attributesOfItem(atPath: target)[.size] as? Int) ?? 0
        let elapsed = ContinuousClock.now - start
        return Result(path: target, bytes: bytes, entries: entries,
                      seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }

    /// Reads the archive's table of contents; returns its entry count, or says why the file is not a whole archive.
    public static func verify(_ path: String) async throws -> Int {
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw MigrateError(.invalidFolder, "\(path) cannot be read; check the path and its permissions")
        }
        let result = try await Command.run(try tool("pg_restore"), ["--list", path])
        guard result.succeeded else {
            throw MigrateError(.invalidFolder, "\(path) is not a whole pg_dump archive: \(result.output.trimmingCharacters(in: .whitespacesAndNewlines)). Use a file written by `tally db backup` (pg_dump -Fc).")
        }
        return result.output.split(separator: "\n").filter { !$0.hasPrefix(";") && !$0.trimmingCharacters(in: .whitespaces).isEmpty }.count
    }

    /// Restores `path` into `database`. A database that already has tables is only restored over with
    /// `replace`, and is backed up first.
    public static func restore(
        _ path: String, into database: ConnectionSettings, replace: Bool, backupDirectory: String = ".tally/backups"
    ) async throws -> RestoreResult {
        _ = try await verify(path)
        let tables = try await tableCount(database)
        var targetBackup: Result?
        if tables > 0 {
            guard replace else {
                throw MigrateError(
                    .confirmationRequired,
                    "database \(database.database) is not empty (\(tables) table(s)); restoring replaces what it holds. Run again with --yes (its current state is backed up first), or restore into an empty database with --database-url.")
            }
            targetBackup = try await create(database, to: defaultPath(for: database.database + "-before-restore", in: backupDirectory))
        }
        var arguments = ["--no-owner", "--exit-on-error", "--single-transaction", "-d", database.database]
        if tables > 0 { arguments = ["--clean", "--if-exists"] + arguments }
        let result = try await Command.run(try tool("pg_restore"), arguments + [path], environment: database.libpqEnvironment)
        guard result.succeeded else {
            throw MigrateError(
                .migrationFailed,
                "pg_restore failed, and rolled back (nothing changed): \(result.output.trimmingCharacters(in: .whitespacesAndNewlines))\(targetBackup.map { " The target's state before is in \($0.path)." } ?? "")")
        }
        return RestoreResult(path: path, database: database.database, targetBackup: targetBackup)
    }

    static func tableCount(_ database: ConnectionSettings) async throws -> Int {
        try await withSingleConnection(database) { connection in
            var n = 0
            for try await c in try await connection.query(
                "SELECT count(*)::int FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
            ).decode(Int.self) { n = c }
            return n
        }
    }

    /// pg_dump, pg_restore: from the newest installed server's directory, else PATH.
    static func tool(_ name: String) throws -> String {
        if let binaries = try? PostgresBinaries.locate(), let path = binaries.clientTool(name) { return path }
        if let path = PostgresBinaries.searchPath(for: name) { return path }
        throw MigrateError(.invalidFolder, "\(name) was not found; install it (apt-get install postgresql-client)")
    }

    /// pg_dump refuses servers newer than itself; say so in advance, with what to install.
    static func checkVersion(_ pgDump: String, against database: ConnectionSettings) async throws {
        let output = try await Command.run(pgDump, ["--version"]).output
        guard let toolMajor = PostgresBinaries.parseVersion(output)?.major else { return }
        let serverNum = try await withSingleConnection(database) { connection in
            var n = 0
            for try await v in try await connection.query("SELECT current_setting('server_version_num')::int").decode(Int.self) { n = v }
            return n
        }
        try checkVersions(pgDump: toolMajor, server: serverNum / 10000, path: pgDump)
    }

    static func checkVersions(pgDump toolMajor: Int, server serverMajor: Int, path: String) throws {
        guard toolMajor >= serverMajor else {
            throw MigrateError(
                .migrationFailed,
                "pg_dump \(toolMajor) (\(path)) cannot back up a PostgreSQL \(serverMajor) server: pg_dump must be at least the server's version. Install postgresql-client-\(serverMajor) and put it first on PATH.")
        }
    }
}
