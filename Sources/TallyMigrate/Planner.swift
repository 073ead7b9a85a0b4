import Foundation
import PostgresNIO
import TallyPostgres

/// What `tally migrate plan` shows before anything runs: each pending migration's statements, the locks
/// they take, lint findings (squawk's rules are the reference), and for every foreign key added, the rows of
/// the live database that would violate it.
public struct Plan: Sendable, Codable {
    public struct Lock: Sendable, Codable, Equatable {
        public var table: String
        /// PostgreSQL's lock mode, e.g. "ACCESS EXCLUSIVE".
        public var mode: String
        /// What it blocks and for how long.
        public var effect: String
    }

    public struct Finding: Sendable, Codable, Equatable {
        /// squawk's rule name, where there is one.
        public var rule: String
        /// "error", "warning" or "info".
        public var severity: String
        public var message: String
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
    public var errors: Int { count("error") }
    public var warnings: Int { count("warning") }

    private func count(_ severity: String) -> Int {
        migrations.reduce(0) { $0 + $1.statements.reduce(0) { $0 + $1.findings.filter { $0.severity == severity }.count } }
    }
}

extension Migrator {
    /// Plans the pending migrations against the live database; changes nothing.
    public func plan() async throws -> Plan {
        try await withSingleConnection(database, logger: logger) { connection in
            let report = try await report(on: connection)
            var migrations: [Plan.Migration] = []
            var createdSoFar: Set<QualifiedName> = []
            for entry in report.pending {
                guard let migration = folder.migrations.first(where: { $0.tag == entry.tag }) else { continue }
                let statements = migration.statements
                let created = Set(statements.flatMap(\.flattened).compactMap(\.createdTable))
                let setsLockTimeout = statements.contains {
                    if case .variableSet(let set) = $0.node { return set.name == "lock_timeout" } else { return false }
                }
                var planned: [Plan.Statement] = []
                var keys: [OrphanReport] = []
                for (n, statement) in statements.enumerated() {
                    let newTables = created.union(createdSoFar)
                    let online = !options.strictSQL && !migration.requiresNoTransaction && statement.onlineForeignKey != nil
                    var findings: [Plan.Finding] = []
                    var locks: [Plan.Lock] = []
                    for part in statement.flattened {
                        findings += try await Lint.check(part, newTables: newTables, onlineRewrite: online, on: connection)
                        locks += Lint.locks(part, newTables: newTables, onlineRewrite: online)
                    }
                    if statement.dynamicSQL > 0 {
                        findings.append(.init(rule: "dynamic-sql", severity: "info",
                                              message: "this DO block runs \(statement.dynamicSQL) EXECUTE statement(s) whose SQL is built at run time; Tally cannot see their locks"))
                    }
                    if n == 0, !setsLockTimeout {
                        findings.append(.init(
                            rule: "require-timeout-settings", severity: "info",
                            message: "the file sets no lock_timeout: Tally sets \(options.lockTimeout) per statement, but a tool running it as written waits behind any long transaction while blocking every query queued after it"))
                    }
                    let ignored = statement.ignoredRules
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
                            if report.orphanedRows > 0 {
                                planned[planned.count - 1].findings.append(.init(
                                    rule: "foreign-key-orphans", severity: "error",
                                    message: "\(report.orphanedRows) row(s) of \(fk.table) violate \(fk.name ?? "this foreign key") (missing keys: \(report.sampleKeys.joined(separator: "; "))): `up` would stop here; archive them with `tally db orphans --clean`"))
                            }
                        } else {
                            // A table or column the migrations create: empty, so nothing can violate the key yet.
                            keys.append(OrphanReport(foreignKey: fk, source: "migration \(migration.tag) (new table or column)", orphanedRows: 0, sampleKeys: [], seconds: 0))
                        }
                    }
                }
                createdSoFar.formUnion(created)
                migrations.append(.init(
                    tag: migration.tag, file: migration.file, transactional: !migration.requiresNoTransaction, statements: planned, foreignKeys: keys))
            }
            return Plan(historyTable: historyTable.description, migrations: migrations)
        }
    }

    private func tableExists(_ table: QualifiedName, on connection: DatabaseConnection) async throws -> Bool {
        try await OrphanScan.missingColumns(table, [], on: connection) != nil
    }
}

/// Lock modes and lint rules (squawk's names) for single statements, read from their parse trees.
enum Lint {
    static func locks(_ statement: SQLStatement, newTables: Set<QualifiedName>, onlineRewrite: Bool) -> [Plan.Lock] {
        switch statement.node {
        case .createStmt, .createTableAs:
            guard let table = statement.createdTable else { return [] }
            return [.init(table: table.description, mode: "ACCESS EXCLUSIVE", effect: "new table: nothing else uses it yet")]
        case .alterTable(let alter):
            let table = alter.relation.qualifiedName
            let commands = alter.commands
            if let fk = statement.addedForeignKeys.first, commands.count == 1, commands[0].subtype == "AT_AddConstraint" {
                if newTables.contains(fk.table) {
                    return [.init(table: fk.table.description, mode: "SHARE ROW EXCLUSIVE", effect: "new table: brief"),
                            .init(table: fk.referencedTable.description, mode: "SHARE ROW EXCLUSIVE", effect: "blocks writes to it briefly")]
                }
                if onlineRewrite || fk.notValid {
                    return [.init(table: fk.table.description, mode: "SHARE ROW EXCLUSIVE", effect: "NOT VALID: no scan, writes wait only a moment"),
                            .init(table: fk.referencedTable.description, mode: "SHARE ROW EXCLUSIVE", effect: "a moment"),
                            .init(table: fk.table.description, mode: "SHARE UPDATE EXCLUSIVE", effect: "VALIDATE CONSTRAINT scans the table; reads and writes go on")]
                }
                return [.init(table: fk.table.description, mode: "SHARE ROW EXCLUSIVE", effect: "blocks writes while the whole table is scanned"),
                        .init(table: fk.referencedTable.description, mode: "SHARE ROW EXCLUSIVE", effect: "blocks writes while the scan runs")]
            }
            if !commands.isEmpty, commands.allSatisfy({ $0.subtype == "AT_ValidateConstraint" }) {
                return [.init(table: table.description, mode: "SHARE UPDATE EXCLUSIVE", effect: "scans; reads and writes go on")]
            }
            let effect = newTables.contains(table) ? "new table: nothing else uses it yet" : "blocks reads and writes until it commits"
            return [.init(table: table.description, mode: "ACCESS EXCLUSIVE", effect: effect)]
        case .index(let index):
            let table = index.relation.qualifiedName
            if index.concurrent == true {
                return [.init(table: table.description, mode: "SHARE UPDATE EXCLUSIVE", effect: "builds while reads and writes go on")]
            }
            return [.init(table: table.description, mode: "SHARE", effect: newTables.contains(table) ? "new table: brief" : "blocks writes while the index builds")]
        case .drop(let drop) where drop.removeType == "OBJECT_TABLE":
            return [.init(table: "(the dropped table)", mode: "ACCESS EXCLUSIVE", effect: "blocks everything until it commits")]
        case .drop(let drop) where drop.removeType == "OBJECT_INDEX":
            let concurrent = drop.concurrent == true
            return [.init(table: "(the index's table)", mode: concurrent ? "SHARE UPDATE EXCLUSIVE" : "ACCESS EXCLUSIVE",
                          effect: concurrent ? "reads and writes go on" : "blocks everything until it commits")]
        case .dml(_, let relation):
            return [.init(table: relation?.qualifiedName.description ?? "(rows it touches)", mode: "ROW EXCLUSIVE", effect: "row locks; long if it touches many rows")]
        default:
            return []
        }
    }

    static func check(_ statement: SQLStatement, newTables: Set<QualifiedName>, onlineRewrite: Bool, on connection: DatabaseConnection) async throws -> [Plan.Finding] {
        var findings: [Plan.Finding] = []
        for fk in statement.addedForeignKeys where !fk.notValid && !newTables.contains(fk.table) {
            findings.append(onlineRewrite
                ? .init(rule: "adding-foreign-key-constraint", severity: "info",
                        message: "foreign key without NOT VALID on an existing table: Tally adds it NOT VALID and validates it in a separate transaction (--strict-sql would run it as written and block writes for a full scan)")
                : .init(rule: "adding-foreign-key-constraint", severity: "warning",
                        message: "foreign key without NOT VALID on an existing table blocks writes to both tables while it scans; add it NOT VALID, then VALIDATE CONSTRAINT in another transaction"))
        }
        switch statement.node {
        case .index(let index) where index.concurrent != true && !newTables.contains(index.relation.qualifiedName):
            findings.append(.init(rule: "require-concurrent-index-creation", severity: "warning",
                                  message: "CREATE INDEX without CONCURRENTLY blocks writes to \(index.relation.qualifiedName) while it builds; use CREATE INDEX CONCURRENTLY (Tally then runs the migration outside a transaction)"))
        case .alterTable(let alter) where !newTables.contains(alter.relation.qualifiedName):
            let table = alter.relation.qualifiedName
            let filled = try await hasRows(table, on: connection)
            for command in alter.commands {
                switch command.subtype {
                case "AT_SetNotNull" where filled:
                    findings.append(.init(rule: "adding-not-nullable-field", severity: "warning",
                                          message: "SET NOT NULL scans \(table) under ACCESS EXCLUSIVE; add a CHECK (col IS NOT NULL) NOT VALID constraint, VALIDATE it, then SET NOT NULL"))
                case "AT_AddColumn" where filled:
                    if case .columnDef(let column)? = command.def {
                        let kinds = column.constraintList.map(\.contype)
                        if kinds.contains("CONSTR_NOTNULL") && !kinds.contains("CONSTR_DEFAULT") && !kinds.contains("CONSTR_IDENTITY") && !kinds.contains("CONSTR_GENERATED") {
                            findings.append(.init(rule: "adding-required-field", severity: "error",
                                                  message: "a NOT NULL column without a DEFAULT fails on \(table), which has rows; give it a DEFAULT or add it nullable and backfill"))
                        }
                    }
                case "AT_AlterColumnType":
                    findings.append(.init(rule: "changing-column-type", severity: "warning",
                                          message: "changing a column's type usually rewrites \(table) under ACCESS EXCLUSIVE; add a new column, backfill, and switch"))
                case "AT_DropColumn":
                    findings.append(.init(rule: "ban-drop-column", severity: "warning",
                                          message: "dropping a column breaks code that still reads it (both services share this database); deploy code that no longer uses it first"))
                default: break
                }
            }
        case .drop(let drop) where drop.removeType == "OBJECT_TABLE":
            findings.append(.init(rule: "ban-drop-table", severity: "warning",
                                  message: "dropping a table loses its data; back it up (tally db backup) and make sure no service uses it"))
        default: break
        }
        for name in truncatedIdentifiers(statement) {
            findings.append(.init(rule: "identifier-too-long", severity: "error",
                                  message: "an identifier starting \"\(name.prefix(20))…\" is longer than 63 bytes; PostgreSQL truncates it to \"\(name)\", so the object gets a different name than the one the code expects"))
        }
        return findings
    }

    /// Names the parser truncated to 63 bytes (it truncates as the server does): a 63-byte name that the
    /// statement's text continues past.
    static func truncatedIdentifiers(_ statement: SQLStatement) -> [String] {
        var names: [String] = []
        switch statement.node {
        case .createStmt(let s):
            names.append(s.relation.relname)
            for case .columnDef(let c) in s.tableElts ?? [] { names += [c.colname].compactMap { $0 } + c.constraintList.compactMap(\.conname) }
            for case .constraint(let c) in s.tableElts ?? [] { names += [c.conname].compactMap { $0 } }
        case .alterTable(let s):
            names.append(s.relation.relname)
            for command in s.commands {
                names += [command.name].compactMap { $0 }
                if case .constraint(let c)? = command.def { names += [c.conname].compactMap { $0 } }
                if case .columnDef(let c)? = command.def { names += [c.colname].compactMap { $0 } }
            }
        case .index(let s):
            names += [s.idxname, s.relation.relname].compactMap { $0 }
        default: break
        }
        return names.filter { name in
            guard name.utf8.count == 63, let range = statement.text.range(of: name) else { return false }
            guard let next = statement.text[range.upperBound...].first else { return false }
            return next != "\"" && (next.isLetter || next.isNumber || next == "_" || next == "$" || !next.isASCII)
        }
    }

    static func hasRows(_ table: QualifiedName, on connection: DatabaseConnection) async throws -> Bool {
        guard try await OrphanScan.missingColumns(table, [], on: connection) != nil else { return false }
        var found = false
        for try await _ in try await connection.query(PostgresQuery(unsafeSQL: "SELECT 1 FROM \(table.sql) LIMIT 1")) {
            found = true
        }
        return found
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
            throw MigrateError(.invalidFolder, "--scratch creates a database, and \(database.user) may not (\(describe(error))); grant it CREATEDB, or plan against the live database")
        }
        var scratch = self
        scratch.database = database.with(database: name)
        do {
            if let tag {
                progress("Applying the migrations through \(tag) to a scratch database (\(name)).")
                _ = try await scratch.up(to: tag)
            }
            let plan = try await scratch.plan()
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
