import Foundation
import Logging
import PostgresNIO
import TallyPostgres

/// Applies a migration folder to a database, keeping a Drizzle-compatible history.
///
/// Promises: one runner at a time per history table (a second runner waits, then finds nothing to do), behind
/// a transaction-mode pooler too (`RunnerLease`); each
/// migration's statements run in file order in one transaction together with its history row, so a failure
/// leaves nothing half-applied; lock waits bounded by `lock_timeout` and retried with backoff; migrations
/// that cannot run in a transaction (`CREATE INDEX CONCURRENTLY`) run statement by statement with the
/// history row written last; a failure is recorded so the next run says what failed and where.
/// Foreign keys added to existing tables go in NOT VALID and are validated after commit
/// (`Migrator+Apply.swift`); what is left to validate is recorded, never guessed.
public struct Migrator: Sendable {
    public struct Options: Sendable {
        /// `SET lock_timeout` for each migration: how long one statement may wait for a table lock.
        public var lockTimeout: Duration = .seconds(5)
        /// How many times a migration is retried after a lock timeout, with doubling backoff.
        public var lockRetries: Int = 3
        public var retryBackoff: Duration = .seconds(1)
        /// `SET statement_timeout` for each migration; nil for none.
        public var statementTimeout: Duration?
        /// How long to wait for another runner holding the history table's lease.
        public var runnerWait: Duration = .seconds(600)
        /// How long a runner's lease lasts unless renewed (it is renewed every third of it while the runner
        /// works): how soon a runner that died is taken over.
        public var leaseTimeToLive: Duration = .seconds(30)
        /// Run files exactly as written: no online rewrite of foreign keys.
        public var strictSQL = false
        /// The lint rules `plan` reports (`LintRules`): squawk's default set unless told otherwise.
        public var lintRules: Set<LintRule.Name> = LintRules.defaultSet
        /// Which app these migrations belong to, and who owns what (`--owners`, `--app`).
        public var ownership: OwnershipCheck?

        public init() {}
    }

    public var folder: MigrationFolder
    public var database: ConnectionSettings
    public var historyTable: HistoryTable
    public var options: Options
    /// Hears one line per step: waits, retries, each migration applied.
    public var progress: @Sendable (String) -> Void
    /// Where the migrator's statements log (the logging system's, labelled `tally.migrate`, unless given).
    public var logger: Logger

    public init(
        folder: MigrationFolder, database: ConnectionSettings, historyTable: HistoryTable = .drizzleDefault,
        options: Options = Options(), logger: Logger = Logger(label: "tally.migrate"), progress: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.logger = logger
        self.folder = folder
        self.database = database
        self.historyTable = historyTable
        self.options = options
        self.progress = progress
    }

    // MARK: - Status

    /// The folder against the history; reads only (creates nothing).
    public func status() async throws -> MigrationReport {
        try await withSingleConnection(database, logger: logger) { connection in
            try await report(on: connection)
        }
    }

    /// `__drizzle_migrations` tables in other schemas than the one this migrator uses, with their row counts.
    public func otherHistoryTables() async throws -> [MigrationReport.OtherHistoryTable] {
        try await withSingleConnection(database, logger: logger) { connection in
            try await historyTable.others(on: connection).map { MigrationReport.OtherHistoryTable(table: $0.0.description, rows: $0.1) }
        }
    }

    func report(on connection: DatabaseConnection) async throws -> MigrationReport {
        let rows = try await historyTable.rows(on: connection)
        let others = try await historyTable.others(on: connection).map {
            MigrationReport.OtherHistoryTable(table: $0.0.description, rows: $0.1)
        }
        let failures = try await MigrationBookkeeping.failures(historyTable, on: connection)
        var report = MigrationReport(folder: folder, historyTable: historyTable, rows: rows, others: others, failures: failures)
        report.notes = folder.notes
        report.unvalidated = try await MigrationBookkeeping.pendingValidations(historyTable, on: connection).map {
            "\($0.constraint) on \($0.table) (migration \($0.tag))"
        }
        report.invalidIndexes = try await MigrationBookkeeping.invalidIndexes(on: connection).map(\.description)
        return report
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

    /// Applies pending migrations in folder order, up to and including `target` when given, after finishing
    /// what an interrupted run left (foreign keys to validate).
    /// `beforeApplying` runs under the runner lock when there is something to apply (the CLI takes its
    /// backup there, so a runner that waited and finds nothing to do takes none).
    public func up(
        to target: String? = nil, dryRun: Bool = false,
        beforeApplying: ([String]) async throws -> Void = { _ in }
    ) async throws -> UpResult {
        let limit = try target.map { try folder.migration(tag: $0).index }
        for note in folder.notes { progress("Note: \(note)") }
        return try await withRunnerLock { connection, lease in
            let columns = dryRun ? [] : try await historyTable.prepare(for: folder, on: connection, progress: progress)
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
            if let ownership = options.ownership {
                let violations = ownership.violations(migrations)
                if !violations.isEmpty, !ownership.allowForeignDDL {
                    throw MigrateError(.migrationFailed, (["nothing applied: these migrations change tables another app owns:"]
                        + violations.map { "  - \($0.tag): \($0.finding.message)" }).joined(separator: "\n"))
                }
                for migration in migrations {
                    let tables = violations.filter { $0.tag == migration.tag }.compactMap(\.finding.table)
                    guard !tables.isEmpty else { continue }
                    progress("--allow-foreign-ddl: \(migration.tag) changes \(Set(tables).sorted().joined(separator: ", ")), owned by another app; recorded in tally_migrate.overrides")
                    try await MigrationBookkeeping.recordOverride(
                        tag: migration.tag, hash: migration.hash, app: ownership.app, tables: Array(Set(tables)).sorted(), history: historyTable, on: connection)
                }
            }
            try await resumeValidations(lease: lease, on: connection)
            if !migrations.isEmpty { try await beforeApplying(migrations.map(\.tag)) }
            var applied: [String] = []
            for migration in migrations {
                try await apply(migration, columns: columns, lease: lease, on: connection)
                applied.append(migration.tag)
            }
            return UpResult(applied: applied, planned: [], report: try await report(on: connection))
        }
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
}
