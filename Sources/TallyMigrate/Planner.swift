import Foundation
import PostgresNIO
import TallyPostgres

/// What `tally migrate plan` shows before anything runs: each pending migration's statements, the locks
/// they take, lint findings (squawk's rules are the reference), and for every foreign key added, the rows of
/// the live database that would violate it.
public struct Plan: Sendable, Codable {
    public struct Lock: Sendable, Codable, Equatable {
        public var table: String
        public var mode: LockMode
        /// What it blocks and for how long.
        public var effect: String
    }

    /// How much a finding matters: an error stops `up` and fails `plan`, warnings count against
    /// `--max-warnings`, info only informs.
    public enum Severity: String, Sendable, Codable, CustomStringConvertible {
        case error, warning, info
        public var description: String { rawValue }
    }

    public struct Finding: Sendable, Codable, Equatable {
        /// The rule's name: squawk's, where squawk has the rule (`LintRules`).
        public var rule: LintRule.Name
        public var severity: Severity
        public var message: String
        /// The live table the finding is about, when there is one (`schema.name`).
        public var table: String?
        /// Its rows (counted up to 100,000; the planner's estimate above that), for findings judged by them.
        public var rows: Int64?

        public init(rule: LintRule.Name, severity: Severity, message: String, table: String? = nil, rows: Int64? = nil) {
            self.rule = rule
            self.severity = severity
            self.message = message
            self.table = table
            self.rows = rows
        }
    }

    public struct Statement: Sendable, Codable {
        public var number: Int
        public var line: Int
        public var sql: String
        public var locks: [Lock]
        public var findings: [Finding]
        /// Findings a `-- tally:ignore` (or `-- squawk-ignore`) comment before the statement silenced.
        public var silenced: [Finding] = []
    }

    public struct Migration: Sendable, Codable {
        public var tag: String
        /// The migration's SQL file, as the folder was given (`--dir`).
        public var file: String
        public var transactional: Bool
        public var statements: [Statement]
        public var foreignKeys: [OrphanReport]
    }

    public var historyTable: String
    public var migrations: [Migration]
    /// True when a pending migration would fail on the data (orphans for a foreign key it adds).
    public var blocked: Bool { migrations.contains { $0.foreignKeys.contains { $0.orphanedRows > 0 } } }
    /// Lint findings of error severity: `up` would fail or do harm.
    public var errors: Int { count(.error) }
    public var warnings: Int { count(.warning) }

    private func count(_ severity: Severity) -> Int {
        migrations.reduce(0) { $0 + $1.statements.reduce(0) { $0 + $1.findings.filter { $0.severity == severity }.count } }
    }
}

extension Migrator {
    /// Plans the pending migrations against the live database; changes nothing. `rowsUnknown`: the database is a
    /// scratch copy of the schema (`--scratch`), so its empty tables stand for filled ones.
    public func plan(rowsUnknown: Bool = false) async throws -> Plan {
        try await withSingleConnection(database, logger: logger) { connection in
            let report = try await report(on: connection)
            var migrations: [Plan.Migration] = []
            var createdSoFar: Set<QualifiedName> = []
            let facts = LiveFacts(connection: connection, rowsUnknown: rowsUnknown)
            for entry in report.pending {
                guard let migration = folder.migrations.first(where: { $0.tag == entry.tag }) else { continue }
                let statements = migration.statements
                let sets = Set(statements.flatMap(\.flattened).compactMap { statement -> String? in
                    if case .variableSet(let set) = statement.node { return set.name } else { return nil }
                })
                var scope = LintScope(
                    facts: facts, newTables: createdSoFar, transactional: !migration.requiresNoTransaction,
                    statementCount: statements.count)
                var planned: [Plan.Statement] = []
                var keys: [OrphanReport] = []
                var timeoutsNoted: Set<String> = []
                for (n, statement) in statements.enumerated() {
                    // New: what the earlier migrations and this one's statements so far (this one included) create.
                    scope.newTables.formUnion(statement.flattened.compactMap(\.createdTable))
                    let newTables = scope.newTables
                    let online = !options.strictSQL && !migration.requiresNoTransaction && statement.onlineForeignKey != nil
                    scope.onlineRewrite = online
                    var findings: [Plan.Finding] = []
                    var locks: [Plan.Lock] = []
                    for part in statement.flattened {
                        let tree = part.tree
                        findings += try await Lint.check(part, tree: tree, scope: &scope)
                        locks += Lint.locks(part, tree: tree, newTables: newTables, onlineRewrite: online)
                    }
                    if statement.dynamicSQL > 0 {
                        findings.append(.init(rule: .dynamicSQL, severity: .info,
                                              message: "this DO block runs \(statement.dynamicSQL) EXECUTE statement(s) whose SQL is built at run time; Tally cannot see their locks"))
                    }
                    findings += try await timeoutFindings(findings, locks: locks, scope: scope, sets: sets, noted: &timeoutsNoted)
                    if n == statements.count - 1, scope.openTransactions > 0 {
                        findings.append(.init(rule: .banUncommittedTransaction, severity: .error,
                                              message: "the file opens a transaction with BEGIN and never commits it: add COMMIT, or better, remove both (Tally runs each migration in a transaction)"))
                    }
                    if let ownership = options.ownership {
                        findings += statement.flattened.flatMap { ownership.findings($0, tree: $0.tree) }
                    }
                    findings = findings.filter { options.lintRules.contains($0.rule) }
                    let ignored = LintRules.expandingAliases(Set(statement.ignoredRules.compactMap(LintRule.Name.init(rawValue:))))
                    planned.append(.init(
                        number: n + 1, line: statement.line, sql: statement.text, locks: locks,
                        findings: findings.filter { !ignored.contains($0.rule) }, silenced: findings.filter { ignored.contains($0.rule) }))
                    for fk in statement.flattened.flatMap(\.addedForeignKeys) {
                        if !newTables.contains(fk.table), try await tableExists(fk.table, on: connection),
                            try await tableExists(fk.referencedTable, on: connection),
                            try await OrphanScan.missingColumns(fk.table, fk.columns, on: connection)?.isEmpty == true
                        {
                            let report = try await OrphanScan.scan(fk, source: "migration \(migration.tag)", on: connection)
                            keys.append(report)
                            if report.orphanedRows > 0, options.lintRules.contains(.foreignKeyOrphans) {
                                planned[planned.count - 1].findings.append(.init(
                                    rule: .foreignKeyOrphans, severity: .error,
                                    message: "\(report.orphanedRows) row(s) of \(fk.table) violate \(fk.name ?? "this foreign key") (missing keys: \(report.sampleKeys.joined(separator: "; "))): `up` would stop here; archive them with `tally db orphans --clean`",
                                    table: fk.table.description))
                            }
                        } else {
                            // A table or column the migrations create: empty, so nothing can violate the key yet.
                            keys.append(OrphanReport(foreignKey: fk, source: "migration \(migration.tag) (new table or column)", orphanedRows: 0, sampleKeys: [], seconds: 0))
                        }
                    }
                }
                createdSoFar = scope.newTables
                migrations.append(.init(
                    tag: migration.tag, file: migration.file, transactional: !migration.requiresNoTransaction, statements: planned, foreignKeys: keys))
            }
            return Plan(historyTable: historyTable.description, migrations: migrations)
        }
    }

    /// require-lock-timeout, once per file, on the first statement that takes a lock other queries queue behind
    /// on a live table with rows; require-statement-timeout on the first that scans, rewrites or builds on one;
    /// each only when the file sets no such timeout.
    private func timeoutFindings(
        _ findings: [Plan.Finding], locks: [Plan.Lock], scope: LintScope, sets: Set<String>, noted: inout Set<String>
    ) async throws -> [Plan.Finding] {
        let locking = findings.filter { LintRules.named($0.rule)?.kind == .lock && $0.table != nil }
        var out: [Plan.Finding] = []
        if !sets.contains("lock_timeout"), !noted.contains("lock") {
            var table = locking.first?.table
            for lock in locks where table == nil && lock.mode.queuesWrites {
                guard let dot = lock.table.firstIndex(of: ".") else { continue }
                let name = QualifiedName(schema: String(lock.table[..<dot]), name: String(lock.table[lock.table.index(after: dot)...]))
                if try await Lint.filled(name, scope) != nil { table = lock.table }
            }
            if let table {
                noted.insert("lock")
                out.append(.init(rule: .requireLockTimeout, severity: .info,
                                 message: "the file sets no lock_timeout: Tally sets one (\(options.lockTimeout)) per statement, but a tool running it as written waits behind any long transaction on \(table) while every query queued after it waits too", table: table))
            }
        }
        guard !locking.isEmpty else { return out }
        let slow = locking.contains { !($0.rule == .changingColumnType && $0.severity == .info) }
        if slow, !sets.contains("statement_timeout"), noted.insert("statement").inserted {
            let given = options.statementTimeout.map { "Tally runs it under the --statement-timeout \($0)" } ?? "Tally runs it under --statement-timeout when you give one"
            out.append(.init(rule: .requireStatementTimeout, severity: .info,
                             message: "the file sets no statement_timeout for a scan or rewrite of a filled table: \(given); a tool running it as written holds the lock for as long as it takes", table: locking[0].table))
        }
        return out
    }

    private func tableExists(_ table: QualifiedName, on connection: DatabaseConnection) async throws -> Bool {
        try await OrphanScan.missingColumns(table, [], on: connection) != nil
    }
}

extension Migrator {
    /// Plans the folder without the live database: in a scratch database on the same server, the migrations
    /// up to and including `appliedThrough` (what production has applied; none when nil) are applied, the
    /// rest are planned, and the scratch database is dropped. For a pull request checked where production
    /// cannot be reached. The user needs CREATEDB.
    public func planInScratchDatabase(appliedThrough tag: String?) async throws -> Plan {
        if let tag { _ = try folder.migration(tag: tag) }
        let name = "tally_plan_" + randomHex(bytes: 6)
        do {
            try await withSingleConnection(database, logger: logger) { try await $0.execute("CREATE DATABASE \(unescaped: quoteIdentifier(name))") }
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == "42501" {
            throw MigrateError(.invalidFolder, "--scratch creates a database, and \(database.user) may not (\(describe(error))); grant it CREATEDB, or plan against the live database", underlying: error)
        }
        var scratch = self
        scratch.database = database.with(database: name)
        do {
            if let tag {
                progress("Applying the migrations through \(tag) to a scratch database (\(name)).")
                _ = try await scratch.up(to: tag)
            }
            let plan = try await scratch.plan(rowsUnknown: true)
            try await dropScratch(name)
            return plan
        } catch {
            try? await dropScratch(name)
            throw error
        }
    }

    private func dropScratch(_ name: String) async throws {
        try await withSingleConnection(database, logger: logger) {
            try await $0.execute("DROP DATABASE IF EXISTS \(unescaped: quoteIdentifier(name)) WITH (FORCE)")
        }
    }
}
