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
    }

    public struct Migration: Sendable, Codable {
        public var tag: String
        public var transactional: Bool
        public var statements: [Statement]
        public var foreignKeys: [OrphanReport]
    }

    public var historyTable: String
    public var migrations: [Migration]
    /// True when a pending migration would fail on the data (orphans for a foreign key it adds).
    public var blocked: Bool { migrations.contains { $0.foreignKeys.contains { $0.orphanedRows > 0 } } }
    public var findings: Int { migrations.reduce(0) { $0 + $1.statements.reduce(0) { $0 + $1.findings.filter { $0.severity != "info" }.count } } }
}

extension Migrator {
    /// Plans the pending migrations against the live database; changes nothing.
    public func plan() async throws -> Plan {
        try await withSingleConnection(database) { connection in
            let report = try await report(on: connection)
            var migrations: [Plan.Migration] = []
            var createdSoFar: Set<QualifiedName> = []
            for entry in report.pending {
                guard let migration = folder.migrations.first(where: { $0.tag == entry.tag }) else { continue }
                let statements = migration.statements
                let created = Set(statements.compactMap { DDL.createdTable(in: $0.text) })
                let online = options.strictSQL ? [:] : Self.onlineForeignKeys(migration)
                let setsLockTimeout = statements.contains { $0.text.lowercased().contains("lock_timeout") }
                var planned: [Plan.Statement] = []
                var keys: [OrphanReport] = []
                for (n, statement) in statements.enumerated() {
                    let newTables = created.union(createdSoFar)
                    var findings = try await Lint.check(statement.text, newTables: newTables, onlineRewrite: online[n] != nil, on: connection)
                    if n == 0, !setsLockTimeout {
                        findings.append(.init(
                            rule: "require-timeout-settings", severity: "info",
                            message: "the file sets no lock_timeout: Tally sets \(options.lockTimeout) per statement, but a tool running it as written waits behind any long transaction while blocking every query queued after it"))
                    }
                    planned.append(.init(
                        number: n + 1, line: statement.line, sql: statement.text,
                        locks: Lint.locks(statement.text, newTables: newTables, onlineRewrite: online[n] != nil), findings: findings))
                    if let fk = DDL.addedForeignKey(in: statement.text) {
                        if try await tableExists(fk.table, on: connection), try await tableExists(fk.referencedTable, on: connection) {
                            keys.append(try await OrphanScan.scan(fk, source: "migration \(migration.tag)", on: connection))
                        } else {
                            // A table a pending migration creates: empty, so nothing can violate the key.
                            keys.append(OrphanReport(foreignKey: fk, source: "migration \(migration.tag) (new table)", orphanedRows: 0, sampleKeys: [], seconds: 0))
                        }
                    }
                }
                createdSoFar.formUnion(created)
                migrations.append(.init(tag: migration.tag, transactional: !migration.requiresNoTransaction, statements: planned, foreignKeys: keys))
            }
            return Plan(historyTable: historyTable.description, migrations: migrations)
        }
    }

    private func tableExists(_ table: QualifiedName, on connection: PostgresConnection) async throws -> Bool {
        try await OrphanScan.missingColumns(table, [], on: connection) != nil
    }
}

/// Lock modes and lint rules for single statements.
enum Lint {
    static func locks(_ sql: String, newTables: Set<QualifiedName>, onlineRewrite: Bool) -> [Plan.Lock] {
        let t = DDL.tokens(sql)
        let words = t.prefix(8).compactMap(\.keyword)
        func name(at index: Int) -> QualifiedName? {
            var i = index
            DDL.skipKeywords(t, &i, ["ONLY", "IF", "EXISTS", "NOT", "CONCURRENTLY"])
            return DDL.qualifiedName(t, &i)
        }
        if words.starts(with: ["CREATE", "TABLE"]) || (words.first == "CREATE" && words.contains("TABLE") && !words.contains("INDEX")) {
            guard let table = DDL.createdTable(in: sql) else { return [] }
            return [.init(table: table.description, mode: "ACCESS EXCLUSIVE", effect: "new table: nothing else uses it yet")]
        }
        if let fk = DDL.addedForeignKey(in: sql) {
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
        if words.starts(with: ["ALTER", "TABLE"]), let table = name(at: 2) {
            if words.contains("VALIDATE") {
                return [.init(table: table.description, mode: "SHARE UPDATE EXCLUSIVE", effect: "scans; reads and writes go on")]
            }
            let effect = newTables.contains(table) ? "new table: nothing else uses it yet" : "blocks reads and writes until it commits"
            return [.init(table: table.description, mode: "ACCESS EXCLUSIVE", effect: effect)]
        }
        if words.first == "CREATE", words.contains("INDEX") {
            guard let on = t.firstIndex(where: { $0.keyword == "ON" }), let table = name(at: on + 1) else { return [] }
            if words.contains("CONCURRENTLY") {
                return [.init(table: table.description, mode: "SHARE UPDATE EXCLUSIVE", effect: "builds while reads and writes go on")]
            }
            return [.init(table: table.description, mode: "SHARE", effect: newTables.contains(table) ? "new table: brief" : "blocks writes while the index builds")]
        }
        if words.starts(with: ["DROP", "TABLE"]), let table = name(at: 2) {
            return [.init(table: table.description, mode: "ACCESS EXCLUSIVE", effect: "blocks everything until it commits")]
        }
        if words.starts(with: ["DROP", "INDEX"]) {
            return [.init(table: "(the index's table)", mode: words.contains("CONCURRENTLY") ? "SHARE UPDATE EXCLUSIVE" : "ACCESS EXCLUSIVE", effect: words.contains("CONCURRENTLY") ? "reads and writes go on" : "blocks everything until it commits")]
        }
        if let first = words.first, ["INSERT", "UPDATE", "DELETE"].contains(first) {
            return [.init(table: "(rows it touches)", mode: "ROW EXCLUSIVE", effect: "row locks; long if it touches many rows")]
        }
        if words.first == "DO" {
            return [.init(table: "(unknown)", mode: "(runs code)", effect: "a DO block takes whatever locks its statements take")]
        }
        return []
    }

    static func check(_ sql: String, newTables: Set<QualifiedName>, onlineRewrite: Bool, on connection: PostgresConnection) async throws -> [Plan.Finding] {
        let t = DDL.tokens(sql)
        let words = t.compactMap(\.keyword)
        var findings: [Plan.Finding] = []
        func tableAfter(_ index: Int) -> QualifiedName? {
            var i = index
            DDL.skipKeywords(t, &i, ["ONLY", "IF", "EXISTS", "NOT", "CONCURRENTLY"])
            return DDL.qualifiedName(t, &i)
        }
        let alterTable = words.starts(with: ["ALTER", "TABLE"]) ? tableAfter(2) : nil
        let existingAltered = alterTable.map { !newTables.contains($0) } ?? false

        if let fk = DDL.addedForeignKey(in: sql), !fk.notValid, !newTables.contains(fk.table) {
            findings.append(onlineRewrite
                ? .init(rule: "adding-foreign-key-constraint", severity: "info",
                        message: "foreign key without NOT VALID on an existing table: Tally adds it NOT VALID and validates it in a separate transaction (--strict-sql would run it as written and block writes for a full scan)")
                : .init(rule: "adding-foreign-key-constraint", severity: "warning",
                        message: "foreign key without NOT VALID on an existing table blocks writes to both tables while it scans; add it NOT VALID, then VALIDATE CONSTRAINT in another transaction"))
        }
        if words.first == "CREATE", words.contains("INDEX"), !words.contains("CONCURRENTLY"),
           let on = t.firstIndex(where: { $0.keyword == "ON" }), let table = tableAfter(on + 1), !newTables.contains(table) {
            findings.append(.init(rule: "require-concurrent-index-creation", severity: "warning",
                                  message: "CREATE INDEX without CONCURRENTLY blocks writes to \(table) while it builds; use CREATE INDEX CONCURRENTLY (Tally then runs the migration outside a transaction)"))
        }
        if let table = alterTable, existingAltered {
            let text = words.joined(separator: " ")
            let filled = try await hasRows(table, on: connection)
            if text.contains("SET NOT NULL"), filled {
                findings.append(.init(rule: "adding-not-nullable-field", severity: "warning",
                                      message: "SET NOT NULL scans \(table) under ACCESS EXCLUSIVE; add a CHECK (col IS NOT NULL) NOT VALID constraint, VALIDATE it, then SET NOT NULL"))
            }
            if text.contains("ADD COLUMN") || (words.contains("ADD") && !words.contains("CONSTRAINT")), text.contains("NOT NULL"), !words.contains("DEFAULT"), filled {
                findings.append(.init(rule: "adding-required-field", severity: "error",
                                      message: "a NOT NULL column without a DEFAULT fails on \(table), which has rows; give it a DEFAULT or add it nullable and backfill"))
            }
            if words.contains("TYPE"), words.filter({ $0 == "ALTER" }).count >= 2 {
                findings.append(.init(rule: "changing-column-type", severity: "warning",
                                      message: "changing a column's type usually rewrites \(table) under ACCESS EXCLUSIVE; add a new column, backfill, and switch"))
            }
            if text.contains("DROP COLUMN") {
                findings.append(.init(rule: "ban-drop-column", severity: "warning",
                                      message: "dropping a column breaks code that still reads it (both services share this database); deploy code that no longer uses it first"))
            }
        }
        if words.starts(with: ["DROP", "TABLE"]) {
            findings.append(.init(rule: "ban-drop-table", severity: "warning",
                                  message: "dropping a table loses its data; back it up (tally db backup) and make sure no service uses it"))
        }
        for token in t {
            if case .quoted(let name) = token, name.utf8.count > 63 {
                findings.append(.init(rule: "identifier-too-long", severity: "error",
                                      message: "\"\(name)\" is \(name.utf8.count) bytes; PostgreSQL truncates names to 63, so the object gets a different name than the one the code expects"))
            } else if case .word(let name) = token, name.utf8.count > 63 {
                findings.append(.init(rule: "identifier-too-long", severity: "error",
                                      message: "\(name) is \(name.utf8.count) bytes; PostgreSQL truncates names to 63"))
            }
        }
        return findings
    }

    static func hasRows(_ table: QualifiedName, on connection: PostgresConnection) async throws -> Bool {
        guard try await OrphanScan.missingColumns(table, [], on: connection) != nil else { return false }
        var found = false
        for try await _ in try await connection.query(PostgresQuery(unsafeSQL: "SELECT 1 FROM \(table.sql) LIMIT 1"), logger: LocalCluster.quietLogger) {
            found = true
        }
        return found
    }
}
