import Foundation
import PostgresNIO
import TallyPostgres

/// How one migration is applied.
///
/// Its statements run in file order in one transaction with its history row. A statement that adds one
/// named foreign key to a table that existed before the migration (directly or as the one statement of a
/// `DO` block) runs with `NOT VALID`; right before it, in the same transaction (so the columns and tables
/// earlier statements made exist), the rows that would violate the key are counted, and any stops the
/// migration. The keys so added are recorded in `tally_migrate.validations` in the same transaction and
/// validated after commit, each in its own transaction; a later run resumes from that record.
extension Migrator {
    /// A statement (1-based; 0 for the bookkeeping after the last one) failed, and the transaction was rolled back.
    struct StatementFailure: Error {
        var statement: Int
        var underlying: any Error
    }

    /// Rows of the live database violate a foreign key the migration adds.
    struct OrphansFound: Error {
        var statement: Int
        var message: String
    }

    func apply(_ migration: Migration, columns: Set<String>, lease: RunnerLease, on connection: DatabaseConnection) async throws {
        if migration.requiresNoTransaction {
            progress("Applying \(migration.tag) (\(migration.statements.count) statements, outside a transaction: it has CONCURRENTLY or similar)")
            try await applyWithoutTransaction(migration, columns: columns, lease: lease, on: connection)
            return
        }
        var online: [Int: SQLStatement.OnlineForeignKey] = [:]
        if !options.strictSQL {
            for (n, statement) in migration.statements.enumerated() {
                if let key = statement.onlineForeignKey { online[n] = key }
            }
        }
        let count = migration.statements.count
        progress("Applying \(migration.tag) (\(count) statement\(count == 1 ? "" : "s")\(online.isEmpty ? "" : "; foreign keys on existing tables go in NOT VALID and are validated after commit"))")
        var toValidate: [MigrationBookkeeping.PendingValidation] = []
        try await retryingLockTimeouts({ "\(migration.tag): statement \(($0 as? StatementFailure)?.statement ?? 0)" }) {
            toValidate = try await runTransaction(migration, online: online, columns: columns, lease: lease, on: connection)
        } failed: { error, attempts in
            if let orphans = error as? OrphansFound {
                try? await MigrationBookkeeping.recordFailure(migration, statement: orphans.statement, message: orphans.message, history: historyTable, on: connection)
                return MigrateError(.migrationFailed, orphans.message)
            }
            guard let failure = error as? StatementFailure else { return error }
            return try await failed(migration, statement: failure.statement, error: failure.underlying, attempts: attempts, rolledBack: true, on: connection)
        }
        try await validate(toValidate, lease: lease, on: connection)
    }

    /// Runs `body`, and again after a lock timeout, with doubling backoff, up to `lockRetries` times; any other
    /// error, or the last lock timeout, is handed to `failed` with the attempts made, and what it returns is
    /// thrown. `waiting` names what waited, for the progress line.
    private func retryingLockTimeouts(
        _ waiting: (any Error) -> String, _ body: () async throws -> Void,
        failed: (any Error, _ attempts: Int) async throws -> any Error
    ) async throws {
        var attempt = 0
        while true {
            do {
                try await body()
                return
            } catch {
                if Self.isLockTimeout((error as? StatementFailure)?.underlying ?? error), attempt < options.lockRetries {
                    let wait = options.retryBackoff * (1 << attempt)
                    attempt += 1
                    progress("\(waiting(error)) could not get its lock within \(options.lockTimeout); retry \(attempt) of \(options.lockRetries) in \(wait)")
                    try await Task.sleep(for: wait)
                    continue
                }
                throw try await failed(error, attempt + 1)
            }
        }
    }

    /// One transaction: the statements (foreign keys on existing tables NOT VALID, orphans counted first),
    /// the history row, Tally's record of it and of the keys left to validate. Returns those keys.
    private func runTransaction(
        _ migration: Migration, online: [Int: SQLStatement.OnlineForeignKey], columns: Set<String>, lease: RunnerLease,
        on connection: DatabaseConnection
    ) async throws -> [MigrationBookkeeping.PendingValidation] {
        var current = 0
        do {
            return try await connection.transaction {
                try await lease.confirm(on: connection)
                try await setTimeouts(on: connection)
                // Which tables exist before the migration: a key on one of them is added online.
                var existing: [String: String] = [:]
                for key in online.values { existing[key.relation] = try await regclass(key.relation, on: connection) }
                if !options.strictSQL {
                    for (n, statement) in migration.statements.enumerated() where online[n] == nil {
                        let keys = statement.flattened.flatMap(\.addedForeignKeys).filter { !$0.notValid }
                        for key in keys where try await regclass(key.table.sql, on: connection) != nil {
                            progress("\(migration.tag): statement \(n + 1) (\(migration.file):\(statement.line)) adds \(key.name ?? "a foreign key") on \(key.table) in a form Tally cannot prove the same when run NOT VALID (\(key.name == nil ? "the key has no name" : "other changes in the same statement")); it runs as written and scans \(key.table) while writes to it wait.")
                        }
                    }
                }
                var pending: [MigrationBookkeeping.PendingValidation] = []
                for (n, statement) in migration.statements.enumerated() {
                    current = n + 1
                    if let key = online[n], let oid = existing[key.relation], try await regclass(key.relation, on: connection) == oid,
                        let name = key.key.name, try await !constraintExists(name, on: oid, connection)
                    {
                        var fk = key.key
                        fk.table = try await qualifiedName(oid: oid, on: connection) ?? fk.table
                        if let referenced = try await regclass(key.referenced, on: connection) {
                            fk.referencedTable = try await qualifiedName(oid: referenced, on: connection) ?? fk.referencedTable
                        }
                        let report = try await OrphanScan.scan(fk, source: "migration \(migration.tag)", inTransaction: true, on: connection)
                        guard report.orphanedRows == 0 else {
                            throw OrphansFound(statement: n + 1, message: """
                                migration \(migration.tag) stops at statement \(n + 1) (\(migration.file):\(statement.line)): it adds \(name) on \(fk.table)(\(fk.columns.joined(separator: ", "))) → \(fk.referencedTable), but \(report.orphanedRows) row(s) violate it (missing keys: \(report.sampleKeys.joined(separator: "; "))). Nothing of the migration was applied (rolled back). See them with `tally db orphans`, archive them with `tally db orphans --clean`, then run `tally migrate up` again.
                                """)
                        }
                        try await connection.execute(PostgresQuery(unsafeSQL: key.rewritten))
                        pending.append(.init(hash: migration.hash, tag: migration.tag, position: n + 1, table: fk.table, constraint: name))
                    } else {
                        try await connection.execute(PostgresQuery(unsafeSQL: statement.text))
                    }
                }
                current = 0
                try await historyTable.insert(migration, baseline: false, columns: columns, on: connection)
                for validation in pending {
                    try await MigrationBookkeeping.recordValidation(validation, history: historyTable, on: connection)
                }
                try await MigrationBookkeeping.clearFailure(migration, history: historyTable, on: connection)
                return pending
            }
        } catch let orphans as OrphansFound {
            throw orphans
        } catch let lost as MigrateError where lost.code == .lockTimeout {
            throw lost  // the lease was lost (`RunnerLease.confirm`): not a failure of the migration
        } catch {
            throw StatementFailure(statement: current, underlying: error)
        }
    }

    /// Validates keys a committed migration added NOT VALID, each in its own transaction that also clears
    /// its record. VALIDATE takes SHARE UPDATE EXCLUSIVE: reads and writes go on while it scans.
    func validate(_ keys: [MigrationBookkeeping.PendingValidation], lease: RunnerLease, on connection: DatabaseConnection) async throws {
        for key in keys {
            guard let oid = try await regclass(key.table.sql, on: connection), try await constraintExists(key.constraint, on: oid, connection) else {
                progress("\(key.constraint) on \(key.table) (migration \(key.tag)) no longer exists; nothing to validate.")
                try await MigrationBookkeeping.clearValidation(key, history: historyTable, on: connection)
                continue
            }
            progress("Validating \(key.constraint) on \(key.table) (reads the table; writes go on)")
            try await retryingLockTimeouts({ _ in "Validating \(key.constraint)" }) {
                try await connection.transaction {
                    try await lease.confirm(on: connection)
                    try await setTimeouts(on: connection)
                    try await connection.run("ALTER TABLE \(key.table.sql) VALIDATE CONSTRAINT \(quoteIdentifier(key.constraint))")
                    try await MigrationBookkeeping.clearValidation(key, history: historyTable, on: connection)
                }
            } failed: { error, _ in
                if let lost = error as? MigrateError { return lost }
                let message = "migration \(key.tag) is applied and \(key.constraint) on \(key.table) is in place NOT VALID (new writes are checked), but validating it failed: \(describe(error)). Clean the rows with `tally db orphans --clean`, then run `tally migrate up` again: it resumes with this validation."
                if let migration = folder.migrations.first(where: { $0.hash == key.hash }) {
                    try? await MigrationBookkeeping.recordFailure(migration, statement: key.position, message: message, history: historyTable, on: connection)
                }
                return MigrateError(.migrationFailed, message)
            }
        }
    }

    /// Finishes the validations an earlier run recorded and did not complete (it was killed, or a row blocked it).
    func resumeValidations(lease: RunnerLease, on connection: DatabaseConnection) async throws {
        let left = try await MigrationBookkeeping.pendingValidations(historyTable, on: connection)
        guard !left.isEmpty else { return }
        let tags = Array(Set(left.map(\.tag))).sorted()
        progress("Resuming: \(tags.joined(separator: ", ")) \(tags.count == 1 ? "is" : "are") applied, and an earlier run left \(left.count) foreign key(s) NOT VALID to validate.")
        try await validate(left, lease: lease, on: connection)
    }

    /// Statement by statement, outside a transaction; the history row last. An index an interrupted
    /// `CREATE INDEX CONCURRENTLY` left INVALID is dropped and built again.
    ///
    /// No session setting is made for these statements: behind a transaction-mode pooler a `SET` outside a
    /// transaction lands on whichever server connection runs it, and stays there for other clients. So they run
    /// without Tally's `lock_timeout` and `statement_timeout`; what needs to run outside a transaction
    /// (`CONCURRENTLY`, `VACUUM`) takes no lock that makes reads or writes wait.
    private func applyWithoutTransaction(_ migration: Migration, columns: Set<String>, lease: RunnerLease, on connection: DatabaseConnection) async throws {
        for (n, statement) in migration.statements.enumerated() {
            // Not atomic with the statement (nothing outside a transaction can be), but the lease is renewed
            // while this runner lives, so only a runner that stalled past it could get here without it.
            try await connection.transaction { try await lease.confirm(on: connection) }
            if case .index(let index) = statement.node, index.concurrent == true, let name = index.idxname,
                let invalid = try await invalidIndex(name, on: index.relation.asWritten, connection)
            {
                progress("\(invalid) is INVALID, left by an interrupted CREATE INDEX CONCURRENTLY; dropping it to build it again.")
                try await connection.run("DROP INDEX CONCURRENTLY IF EXISTS \(invalid.sql)")
            }
            try await retryingLockTimeouts({ _ in "\(migration.tag): statement \(n + 1)" }) {
                try await connection.execute(PostgresQuery(unsafeSQL: statement.text))
            } failed: { error, attempts in
                try await failed(migration, statement: n + 1, error: error, attempts: attempts, rolledBack: false, on: connection)
            }
        }
        do {
            try await connection.transaction {
                try await lease.confirm(on: connection)
                try await historyTable.insert(migration, baseline: false, columns: columns, on: connection)
                try await MigrationBookkeeping.clearFailure(migration, history: historyTable, on: connection)
            }
        } catch let lost as MigrateError where lost.code == .lockTimeout {
            throw lost
        } catch {
            throw try await failed(migration, statement: 0, error: error, attempts: 1, rolledBack: false, on: connection)
        }
    }

    // MARK: - Catalog lookups (inside the migration's transaction)

    /// The table's oid (as text) when `relation` (as the statement wrote it) resolves, else nil.
    private func regclass(_ relation: String, on connection: DatabaseConnection) async throws -> String? {
        for try await oid in try await connection.query("SELECT to_regclass(\(relation))::oid::text").decode(String?.self) {
            return oid
        }
        return nil
    }

    private func qualifiedName(oid: String, on connection: DatabaseConnection) async throws -> QualifiedName? {
        for try await (schema, name) in try await connection.query(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = \(oid)::oid"
        ).decode((String, String).self) { return QualifiedName(schema: schema, name: name) }
        return nil
    }

    private func constraintExists(_ name: String, on oid: String, _ connection: DatabaseConnection) async throws -> Bool {
        for try await _ in try await connection.query(
            "SELECT 1 FROM pg_constraint WHERE conrelid = \(oid)::oid AND conname = \(name)")
        { return true }
        return false
    }

    private func invalidIndex(_ name: String, on relation: String, _ connection: DatabaseConnection) async throws -> QualifiedName? {
        for try await (schema, index) in try await connection.query(
            """
            SELECT n.nspname::text, c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE i.indrelid = to_regclass(\(relation)) AND c.relname = \(name) AND NOT i.indisvalid
            """
        ).decode((String, String).self) { return QualifiedName(schema: schema, name: index) }
        return nil
    }

    // MARK: - Settings and errors

    /// The migration's timeouts, for the rest of its transaction only (`SET LOCAL`: nothing outlives the
    /// transaction on the server connection, which a pooler may hand to another client next).
    private func setTimeouts(on connection: DatabaseConnection) async throws {
        let statement = options.statementTimeout.map { Self.milliseconds($0) } ?? 0
        try await connection.run("SET LOCAL lock_timeout = \(Self.milliseconds(options.lockTimeout))")
        try await connection.run("SET LOCAL statement_timeout = \(statement)")
    }

    static func milliseconds(_ d: Duration) -> Int64 {
        d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
    }

    /// Records the failure (outside the rolled-back transaction) and builds the error to show: migration,
    /// statement number, file and line, SQLSTATE, the server's message and detail.
    func failed(
        _ migration: Migration, statement: Int, error: any Error, attempts: Int, rolledBack: Bool, on connection: DatabaseConnection
    ) async throws -> MigrateError {
        let reason = describe(error)
        let statementNumber: Int? = statement > 0 ? statement : nil
        try? await MigrationBookkeeping.recordFailure(migration, statement: statementNumber, message: reason, history: historyTable, on: connection)
        var where_ = "while writing its history row"
        if let statementNumber {
            let s = migration.statements[statementNumber - 1]
            where_ = "at statement \(statementNumber) of \(migration.statements.count) (\(migration.file):\(s.line): \(Self.snippet(s.text)))"
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

    static func snippet(_ text: String) -> String {
        let flat = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.hasPrefix("--") }.joined(separator: " ")
        return flat.count > 80 ? String(flat.prefix(77)) + "..." : flat
    }

    static func isLockTimeout(_ error: any Error) -> Bool {
        (error as? PSQLError)?.serverInfo?[.sqlState] == "55P03"
    }
}
