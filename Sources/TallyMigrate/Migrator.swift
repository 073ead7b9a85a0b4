import Foundation
import Logging
import PostgresNIO
import TallyPostgres

/// Applies a migration folder to a database, keeping a Drizzle-compatible history.
///
/// Promises: one runner at a time per history table (a session advisory lock; a second runner waits, then
/// finds nothing to do); each migration in its own transaction together with its history row, so a failure
/// leaves nothing half-applied; lock waits bounded by `lock_timeout` and retried with backoff; migrations
/// that cannot run in a transaction (`CREATE INDEX CONCURRENTLY`) run statement by statement with the
/// history row written last; a failure is recorded so the next run says what failed and where.
public struct Migrator: Sendable {
    public struct Options: Sendable {
        /// `SET lock_timeout` for each migration: how long one statement may wait for a table lock.
        public var lockTimeout: Duration = .seconds(5)
        /// How many times a migration is retried after a lock timeout, with doubling backoff.
        public var lockRetries: Int = 3
        public var retryBackoff: Duration = .seconds(1)
        /// `SET statement_timeout` for each migration; nil for none.
        public var statementTimeout: Duration?
        /// How long to wait for another runner holding the history table's lock.
        public var runnerWait: Duration = .seconds(600)
        /// Run files exactly as written: no online rewrite of foreign keys.
        public var strictSQL = false

        public init() {}
    }

    public var folder: MigrationFolder
    public var database: ConnectionSettings
    public var historyTable: HistoryTable
    public var options: Options
    /// Hears one line per step: waits, retries, each migration applied.
    public var progress: @Sendable (String) -> Void

    public init(
        folder: MigrationFolder, database: ConnectionSettings, historyTable: HistoryTable = .drizzleDefault,
        options: Options = Options(), progress: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.folder = folder
        self.database = database
        self.historyTable = historyTable
        self.options = options
        self.progress = progress
    }

    // MARK: - Status

    /// The folder against the history; reads only (creates nothing).
    public func status() async throws -> MigrationReport {
        try await withSingleConnection(database) { connection in
            try await report(on: connection)
        }
    }

    /// `__drizzle_migrations` tables in other schemas than the one this migrator uses, with their row counts.
    public func otherHistoryTables() async throws -> [MigrationReport.OtherHistoryTable] {
        try await withSingleConnection(database) { connection in
            try await historyTable.others(on: connection).map { MigrationReport.OtherHistoryTable(table: $0.0.description, rows: $0.1) }
        }
    }

    func report(on connection: PostgresConnection) async throws -> MigrationReport {
        let rows = try await historyTable.rows(on: connection)
        let others = try await historyTable.others(on: connection).map {
            MigrationReport.OtherHistoryTable(table: $0.0.description, rows: $0.1)
        }
        let failures = try await historyTable.failures(on: connection)
        return MigrationReport(folder: folder, historyTable: historyTable, rows: rows, others: others, failures: failures)
    }

    // MARK: - Up

    public struct UpResult: Sendable, Codable {
        public var applied: [String]
        /// With `dryRun`: what would run, with its statements.
        public var planned: [PlannedMigration]
        public var report: MigrationReport
    }

    public struct PlannedMigration: Sendable, Codable {
        public var tag: String
        public var transactional: Bool
        public var statements: [String]
    }

    /// Applies pending migrations in folder order, up to and including `target` when given.
    /// `beforeApplying` runs under the runner lock when there is something to apply (the CLI takes its
    /// backup there, so a runner that waited and finds nothing to do takes none).
    public func up(
        to target: String? = nil, dryRun: Bool = false,
        beforeApplying: ([String]) async throws -> Void = { _ in }
    ) async throws -> UpResult {
        let limit = try target.map { try folder.migration(tag: $0).index }
        return try await withRunnerLock { connection in
            if !dryRun { try await historyTable.ensure(on: connection) }
            let before = try await report(on: connection)
            guard before.isConsistent else { throw Self.inconsistent(before, action: "applying migrations") }
            let pending = before.pending.filter { limit == nil || $0.index <= limit! }
            let migrations = pending.compactMap { entry in folder.migrations.first { $0.tag == entry.tag } }
            if dryRun {
                let planned = migrations.map {
                    PlannedMigration(tag: $0.tag, transactional: !$0.requiresNoTransaction, statements: $0.statements.map(\.text))
                }
                return UpResult(applied: [], planned: planned, report: before)
            }
            if !migrations.isEmpty { try await beforeApplying(migrations.map(\.tag)) }
            var applied: [String] = []
            for migration in migrations {
                try await apply(migration, on: connection)
                applied.append(migration.tag)
            }
            return UpResult(applied: applied, planned: [], report: try await report(on: connection))
        }
    }

    private func apply(_ migration: Migration, on connection: PostgresConnection) async throws {
        let statements = migration.statements
        if migration.requiresNoTransaction {
            progress("Applying \(migration.tag) (\(statements.count) statements, outside a transaction: it has CONCURRENTLY or similar)")
            try await applyWithoutTransaction(migration, statements, on: connection)
            return
        }
        let online = options.strictSQL ? [:] : Self.onlineForeignKeys(migration)
        if online.isEmpty {
            progress("Applying \(migration.tag) (\(statements.count) statements)")
            try await applyInTransaction(migration, statements, on: connection) {
                try await insertHistoryRow(migration, baseline: false, on: connection)
                try await clearFailure(migration, on: connection)
            }
        } else {
            try await applyOnline(migration, statements, foreignKeys: online, on: connection)
        }
    }

    /// Foreign keys a migration adds to tables it does not create itself, by statement number (0-based):
    /// those are added NOT VALID and validated afterwards, so no write waits for a scan.
    static func onlineForeignKeys(_ migration: Migration) -> [Int: ForeignKeyDefinition] {
        let statements = migration.statements.map(\.text)
        let created = Set(statements.compactMap(DDL.createdTable(in:)))
        var out: [Int: ForeignKeyDefinition] = [:]
        for (n, text) in statements.enumerated() {
            if let fk = DDL.addedForeignKey(in: text), fk.name != nil, !fk.notValid, !created.contains(fk.table) {
                out[n] = fk
            }
        }
        return out
    }

    /// The migration with its foreign keys added NOT VALID (one transaction), each validated in its own
    /// transaction, and the history row written once all are valid. Orphans are counted first, so a key the
    /// data would break stops the migration before anything changes.
    private func applyOnline(
        _ migration: Migration, _ statements: [SQLStatement], foreignKeys: [Int: ForeignKeyDefinition],
        on connection: PostgresConnection
    ) async throws {
        let keys = foreignKeys.sorted { $0.key < $1.key }
        // A previous run that stopped at validation left the constraints in place, NOT VALID.
        var resumed = false
        for (_, fk) in keys where try await constraintExists(fk, on: connection) { resumed = true }
        if !resumed {
            for (n, fk) in keys {
                let report = try await OrphanScan.scan(fk, source: "migration \(migration.tag)", on: connection)
                guard report.orphanedRows == 0 else {
                    let error = MigrateError(
                        .migrationFailed,
                        "migration \(migration.tag) would add \(fk.name ?? "a foreign key") on \(fk.table)(\(fk.columns.joined(separator: ", "))) → \(fk.referencedTable), but \(report.orphanedRows) row(s) violate it (missing keys: \(report.sampleKeys.joined(separator: "; "))). Nothing was applied. See them with `tally db orphans`, archive them with `tally db orphans --clean`, then run `tally migrate up` again.")
                    try? await recordFailure(migration, statement: n + 1, message: error.message, on: connection)
                    throw error
                }
            }
            progress("Applying \(migration.tag) (\(statements.count) statements; \(keys.count) foreign key(s) added NOT VALID, validated after)")
            var rewritten = statements
            for (n, _) in keys { rewritten[n].text += "\nNOT VALID" }
            try await applyInTransaction(migration, rewritten, on: connection) {}
        } else {
            progress("Resuming \(migration.tag): its foreign keys exist NOT VALID; validating them")
        }
        for (n, fk) in keys {
            guard let name = fk.name else { continue }
            progress("Validating \(name) on \(fk.table) (reads the table; writes go on)")
            let validate = SQLStatement(text: "ALTER TABLE \(fk.table.sql) VALIDATE CONSTRAINT \(quoteIdentifier(name))", line: statements[n].line)
            do {
                try await runInTransaction([validate], on: connection) {}
            } catch let failure as StatementFailure {
                let message = "migration \(migration.tag): \(name) was added NOT VALID (new writes are checked) but validating it failed: \(describe(failure.underlying)). Clean the rows with `tally db orphans --clean`, then run `tally migrate up` again to validate; the history row is written once it is valid."
                try? await recordFailure(migration, statement: n + 1, message: message, on: connection)
                throw MigrateError(.migrationFailed, message)
            }
        }
        try await connection.transaction {
            try await insertHistoryRow(migration, baseline: false, on: connection)
            try await clearFailure(migration, on: connection)
        }
    }

    private func constraintExists(_ fk: ForeignKeyDefinition, on connection: PostgresConnection) async throws -> Bool {
        guard let name = fk.name else { return false }
        let rows = try await connection.query(
            "SELECT 1 FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE con.conname = \(name) AND c.relname = \(fk.table.name) AND n.nspname = \(fk.table.schema)",
            logger: LocalCluster.quietLogger)
        for try await _ in rows { return true }
        return false
    }

    private func applyInTransaction(
        _ migration: Migration, _ statements: [SQLStatement], on connection: PostgresConnection,
        finish: () async throws -> Void
    ) async throws {
        var attempt = 0
        while true {
            do {
                try await runInTransaction(statements, on: connection, finish: finish)
                return
            } catch let failure as StatementFailure {
                if Self.isLockTimeout(failure.underlying), attempt < options.lockRetries {
                    let wait = options.retryBackoff * (1 << attempt)
                    attempt += 1
                    progress("\(migration.tag): statement \(failure.statement) could not get its lock within \(options.lockTimeout); retry \(attempt) of \(options.lockRetries) in \(wait)")
                    try await Task.sleep(for: wait)
                    continue
                }
                throw try await failed(migration, statement: failure.statement, of: statements, error: failure.underlying, attempts: attempt + 1, rolledBack: true, on: connection)
            }
        }
    }

    /// A statement (1-based; 0 for the bookkeeping after the last one) failed, and the transaction was rolled back.
    struct StatementFailure: Error {
        var statement: Int
        var underlying: any Error
    }

    /// Runs `statements` in one transaction under the configured timeouts, then `finish`, then commits.
    /// Any failure rolls back and is thrown as a `StatementFailure`.
    private func runInTransaction(
        _ statements: [SQLStatement], on connection: PostgresConnection, finish: () async throws -> Void
    ) async throws {
        var current = 0
        do {
            try await connection.transaction {
                try await connection.run(timeoutSettings(local: true))
                for (n, statement) in statements.enumerated() {
                    current = n + 1
                    try await connection.run(statement.text)
                }
                current = 0
                try await finish()
            }
        } catch {
            throw StatementFailure(statement: current, underlying: error)
        }
    }


    private func applyWithoutTransaction(_ migration: Migration, _ statements: [SQLStatement], on connection: PostgresConnection) async throws {
        try await connection.run(timeoutSettings(local: false))
        do {
            for (n, statement) in statements.enumerated() {
                var attempt = 0
                while true {
                    do {
                        try await connection.run(statement.text)
                        break
                    } catch {
                        if Self.isLockTimeout(error), attempt < options.lockRetries {
                            let wait = options.retryBackoff * (1 << attempt)
                            attempt += 1
                            progress("\(migration.tag): statement \(n + 1) could not get its lock; retry \(attempt) of \(options.lockRetries) in \(wait)")
                            try await Task.sleep(for: wait)
                            continue
                        }
                        throw try await failed(migration, statement: n + 1, of: statements, error: error, attempts: attempt + 1, rolledBack: false, on: connection)
                    }
                }
            }
            try await connection.transaction {
                try await insertHistoryRow(migration, baseline: false, on: connection)
                try await clearFailure(migration, on: connection)
            }
        } catch {
            try? await connection.run("RESET lock_timeout; RESET statement_timeout")
            throw error
        }
        try await connection.run("RESET lock_timeout; RESET statement_timeout")
    }

    private func timeoutSettings(local: Bool) -> String {
        let scope = local ? "SET LOCAL" : "SET"
        let statement = options.statementTimeout.map { Self.milliseconds($0) } ?? 0
        return "\(scope) lock_timeout = \(Self.milliseconds(options.lockTimeout)); \(scope) statement_timeout = \(statement)"
    }

    static func milliseconds(_ d: Duration) -> Int64 {
        d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
    }

    private func insertHistoryRow(_ migration: Migration, baseline: Bool, on connection: PostgresConnection) async throws {
        if baseline {
            try await connection.execute(
                "INSERT INTO \(unescaped: historyTable.sql) (hash, created_at, name, applied_at) VALUES (\(migration.hash), \(migration.createdAt), \(migration.tag), NULL)",
                logger: LocalCluster.quietLogger)
        } else {
            try await connection.execute(
                "INSERT INTO \(unescaped: historyTable.sql) (hash, created_at, name) VALUES (\(migration.hash), \(migration.createdAt), \(migration.tag))",
                logger: LocalCluster.quietLogger)
        }
    }

    private func clearFailure(_ migration: Migration, on connection: PostgresConnection) async throws {
        try await connection.execute(
            "DELETE FROM \(unescaped: historyTable.failuresSQL) WHERE history_table = \(historyTable.description) AND tag = \(migration.tag)",
            logger: LocalCluster.quietLogger)
    }

    /// Records the failure (outside the rolled-back transaction) and builds the error to show.
    private func failed(
        _ migration: Migration, statement: Int, of statements: [SQLStatement], error: any Error, attempts: Int,
        rolledBack: Bool, on connection: PostgresConnection
    ) async throws -> MigrateError {
        let reason = describe(error)
        let statementNumber: Int? = statement > 0 ? statement : nil
        try? await recordFailure(migration, statement: statementNumber, message: reason, on: connection)
        var where_ = "while writing its history row"
        if let statementNumber {
            let s = statements[statementNumber - 1]
            where_ = "at statement \(statementNumber) of \(statements.count) (line \(s.line): \(Self.snippet(s.text)))"
        }
        let outcome = rolledBack
            ? "Nothing of it was applied (rolled back)."
            : "It runs outside a transaction: statements before \(statement) stay applied; make them safe to re-run (IF NOT EXISTS) or undo them, then run again."
        if Self.isLockTimeout(error) {
            return MigrateError(
                .lockTimeout,
                "migration \(migration.tag) could not get a lock \(where_) within \(options.lockTimeout), \(attempts) attempt(s): \(reason). \(outcome) Another session holds a conflicting lock; find it with SELECT pid, state, query FROM pg_stat_activity WHERE pid IN (SELECT pid FROM pg_locks WHERE NOT granted OR locktype = 'relation'), then retry (or raise --lock-timeout)."
            )
        }
        return MigrateError(
            .migrationFailed,
            "migration \(migration.tag) failed \(where_): \(reason). \(outcome) Fix the migration or the data and run `tally migrate up` again.")
    }

    private func recordFailure(_ migration: Migration, statement: Int?, message: String, on connection: PostgresConnection) async throws {
        try await connection.execute(
            """
            INSERT INTO \(unescaped: historyTable.failuresSQL) (history_table, tag, hash, statement, error)
            VALUES (\(historyTable.description), \(migration.tag), \(migration.hash), \(statement), \(message))
            ON CONFLICT (history_table, tag) DO UPDATE
            SET hash = excluded.hash, statement = excluded.statement, error = excluded.error, failed_at = now()
            """,
            logger: LocalCluster.quietLogger)
    }

    static func snippet(_ text: String) -> String {
        let flat = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
        return flat.count > 80 ? String(flat.prefix(77)) + "..." : flat
    }

    static func isLockTimeout(_ error: any Error) -> Bool {
        (error as? PSQLError)?.serverInfo?[.sqlState] == "55P03"
    }

    static func inconsistent(_ report: MigrationReport, action: String) -> MigrateError {
        var lines = ["the history in \(report.historyTable) does not match the folder \(report.folder), so \(action) stops here:"]
        for entry in report.changed {
            lines.append("  - \(entry.tag): file hash \(entry.hash.prefix(12))… but history row \(entry.rowID ?? 0) has \(entry.rowHash?.prefix(12) ?? "?")…")
        }
        for row in report.unknownRows {
            lines.append("  - history row \(row.id) (hash \(row.hash.prefix(12))…, created_at \(row.createdAt.map(String.init) ?? "null")) matches no file")
        }
        lines.append("Run `tally migrate status` for details and `tally migrate repair` to realign the history with the files.")
        return MigrateError(.historyProblem, lines.joined(separator: "\n"))
    }

    // MARK: - Lock

    /// Runs `body` holding the history table's advisory lock on one connection.
    func withRunnerLock<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await withSingleConnection(database) { connection in
            let key = historyTable.lockKey
            let clock = ContinuousClock()
            let deadline = clock.now + options.runnerWait
            var told = false
            while true {
                var got = false
                for try await ok in try await connection.query("SELECT pg_try_advisory_lock(\(key))", logger: LocalCluster.quietLogger).decode(Bool.self) {
                    got = ok
                }
                if got { break }
                if !told {
                    progress("Another runner is migrating \(historyTable); waiting for it to finish.")
                    told = true
                }
                guard clock.now < deadline else {
                    throw MigrateError(.lockTimeout, "another runner held the migration lock on \(historyTable) for over \(options.runnerWait); check pg_stat_activity for it and retry")
                }
                try await Task.sleep(for: .milliseconds(200))
            }
            do {
                let result = try await body(connection)
                try? await connection.execute("SELECT pg_advisory_unlock(\(key))")
                return result
            } catch {
                try? await connection.execute("SELECT pg_advisory_unlock(\(key))")
                throw error
            }
        }
    }

    // MARK: - Baseline

    public struct BaselineResult: Sendable, Codable {
        public var marked: [String]
        public var alreadyApplied: [String]
        /// Objects the migrations create that the database lacks (non-empty only with `force`).
        public var missing: [String]
    }

    /// Marks every migration up to `through` applied without running it, after checking that the objects
    /// those migrations create exist (by applying them to a scratch database and comparing).
    public func baseline(through target: String, force: Bool = false) async throws -> BaselineResult {
        let last = try folder.migration(tag: target).index
        let migrations = folder.migrations.filter { $0.index <= last }
        let missing = try await SchemaObjects.missing(applying: migrations, to: database, excluding: historyTable, progress: progress)
        if !missing.isEmpty && !force {
            throw MigrateError(
                .baselineRefused,
                (["baseline refused: the migrations through \(target) create objects this database does not have:"]
                    + missing.map { "  - \($0)" }
                    + ["Apply them with `tally migrate up`, or mark them anyway with --force if you know better."]).joined(separator: "\n"))
        }
        return try await withRunnerLock { connection in
            try await historyTable.ensure(on: connection)
            let before = try await report(on: connection)
            var marked: [String] = []
            var already: [String] = []
            try await connection.transaction {
                for migration in migrations {
                    guard let entry = before.entries.first(where: { $0.tag == migration.tag }) else { continue }
                    switch entry.state {
                    case .pending:
                        try await insertHistoryRow(migration, baseline: true, on: connection)
                        marked.append(migration.tag)
                    case .applied, .baseline:
                        already.append(migration.tag)
                    case .changed:
                        throw MigrateError(.historyProblem, "\(migration.tag) already has a history row whose hash differs from the file; run `tally migrate repair` first")
                    }
                }
            }
            return BaselineResult(marked: marked, alreadyApplied: already, missing: missing)
        }
    }

    // MARK: - Repair

    public struct RepairResult: Sendable, Codable {
        public struct Rewrite: Sendable, Codable {
            public var rowID: Int
            public var tag: String
            public var oldHash: String
            public var newHash: String
        }
        /// A history row that claims a migration ran although what it creates is missing (a hand-typed row):
        /// removed, so the migration is pending again.
        public struct NotApplied: Sendable, Codable {
            public var rowID: Int
            public var tag: String
            public var missing: [String]
        }
        public var rewrites: [Rewrite]
        public var notApplied: [NotApplied]
        /// Rows no file matches: archived to `<table>_removed`, then deleted.
        public var removed: [HistoryTable.Row]
        /// False when only shown (no confirmation given).
        public var applied: Bool

        public var isEmpty: Bool { rewrites.isEmpty && notApplied.isEmpty && removed.isEmpty }
    }

    /// Realigns history rows with files. A row matched to a file by name or created_at whose hash differs is
    /// rewritten when the objects that migration creates exist in the database; when they do not (the row was
    /// typed by hand and the migration never ran), the row is removed so the migration is pending again.
    /// Rows no file matches are removed. Removed rows are archived in `<table>_removed` first.
    /// With `apply == false` only shows.
    public func repair(apply: Bool) async throws -> RepairResult {
        let first = try await status()
        var missingByTag: [String: [String]] = [:]
        if let last = first.changed.map(\.index).max() {
            let created = try await SchemaObjects.createdByEach(
                folder.migrations.filter { $0.index <= last }, live: database, excluding: historyTable, progress: progress)
            let live = try await withSingleConnection(database) { try await SchemaObjects.list(on: $0, excluding: historyTable) }
            for entry in first.changed {
                missingByTag[entry.tag] = (created[entry.tag] ?? []).subtracting(live).sorted()
            }
        }
        return try await withRunnerLock { connection in
            let report = try await report(on: connection)
            var result = RepairResult(rewrites: [], notApplied: [], removed: report.unknownRows, applied: false)
            for entry in report.changed {
                let missing = missingByTag[entry.tag] ?? []
                if missing.isEmpty {
                    result.rewrites.append(.init(rowID: entry.rowID ?? 0, tag: entry.tag, oldHash: entry.rowHash ?? "", newHash: entry.hash))
                } else {
                    result.notApplied.append(.init(rowID: entry.rowID ?? 0, tag: entry.tag, missing: missing))
                }
            }
            guard apply, !result.isEmpty else { return result }
            try await historyTable.ensure(on: connection)
            try await connection.transaction {
                for rewrite in result.rewrites {
                    let migration = try folder.migration(tag: rewrite.tag)
                    try await connection.execute(
                        "UPDATE \(unescaped: historyTable.sql) SET hash = \(migration.hash), name = \(migration.tag), created_at = \(migration.createdAt) WHERE id = \(rewrite.rowID)",
                        logger: LocalCluster.quietLogger)
                }
                let removals = result.removed.map(\.id) + result.notApplied.map(\.rowID)
                if !removals.isEmpty {
                    try await connection.run("""
                        CREATE TABLE IF NOT EXISTS \(historyTable.removedSQL) (
                            id int, hash text, created_at bigint, name text, applied_at timestamptz,
                            removed_at timestamptz NOT NULL DEFAULT now(), removed_by text NOT NULL DEFAULT current_user)
                        """)
                    for id in removals {
                        try await connection.execute(
                            "INSERT INTO \(unescaped: historyTable.removedSQL) (id, hash, created_at, name, applied_at) SELECT id, hash, created_at, name, applied_at FROM \(unescaped: historyTable.sql) WHERE id = \(id)",
                            logger: LocalCluster.quietLogger)
                        try await connection.execute(
                            "DELETE FROM \(unescaped: historyTable.sql) WHERE id = \(id)", logger: LocalCluster.quietLogger)
                    }
                }
            }
            result.applied = true
            return result
        }
    }

    // MARK: - Down

    public struct DownResult: Sendable, Codable {
        public var reverted: [String]
        public var planned: [String]
    }

    /// Runs down files in reverse for applied migrations after `target` (or only the newest one when nil),
    /// removing their history rows in the same transaction. Refuses when one on the way has no down file.
    public func down(to target: String? = nil, dryRun: Bool = false) async throws -> DownResult {
        let keepThrough = try target.map { try folder.migration(tag: $0).index }
        return try await withRunnerLock { connection in
            let report = try await report(on: connection)
            guard report.isConsistent else { throw Self.inconsistent(report, action: "reverting") }
            let applied = report.entries.filter { $0.state == .applied || $0.state == .baseline }
            var toRevert: [MigrationReport.Entry]
            if let keepThrough {
                toRevert = applied.filter { $0.index > keepThrough }
            } else {
                toRevert = applied.last.map { [$0] } ?? []
            }
            toRevert.reverse()
            let missingDown = toRevert.filter { !$0.hasDownFile }.map(\.tag)
            guard missingDown.isEmpty else {
                throw MigrateError(
                    .noDownFile,
                    "cannot revert: \(missingDown.joined(separator: ", ")) has no down file (TAG.down.sql). Nothing was changed. Write one, or restore from a backup.")
            }
            if dryRun { return DownResult(reverted: [], planned: toRevert.map(\.tag)) }
            var reverted: [String] = []
            for entry in toRevert {
                guard let migration = folder.migrations.first(where: { $0.tag == entry.tag }), let down = migration.downSQL else { continue }
                progress("Reverting \(entry.tag)")
                let statements = SQLStatements.split(down)
                do {
                    try await runInTransaction(statements, on: connection) {
                        try await connection.execute(
                            "DELETE FROM \(unescaped: historyTable.sql) WHERE id = \(entry.rowID ?? -1)", logger: LocalCluster.quietLogger)
                    }
                } catch let failure as StatementFailure {
                    throw MigrateError(
                        .migrationFailed,
                        "reverting \(entry.tag) failed at statement \(failure.statement) of \(entry.tag).down.sql: \(describe(failure.underlying)). Nothing of it was reverted (rolled back)\(reverted.isEmpty ? "" : "; already reverted: \(reverted.joined(separator: ", "))").")
                }
                reverted.append(entry.tag)
            }
            return DownResult(reverted: reverted, planned: [])
        }
    }
}
