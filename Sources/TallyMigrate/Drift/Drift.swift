import Foundation
import PostgresNIO
import TallyPostgres

/// One difference between what an app declares and what the database has, with the fix.
public struct DriftFinding: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable, CaseIterable {
        case missingTable = "missing-table", extraTable = "extra-table"
        case missingColumn = "missing-column", extraColumn = "extra-column", unmappedRequiredColumn = "unmapped-required-column"
        case typeMismatch = "type-mismatch", nullabilityMismatch = "nullability-mismatch", defaultMismatch = "default-mismatch"
        case identityMismatch = "identity-mismatch", generatedMismatch = "generated-mismatch"
        case primaryKeyMismatch = "primary-key-mismatch"
        case missingForeignKey = "missing-foreign-key", extraForeignKey = "extra-foreign-key"
        case foreignKeyActionMismatch = "foreign-key-action-mismatch"
        case missingUnique = "missing-unique", extraUnique = "extra-unique"
        case missingIndex = "missing-index", extraIndex = "extra-index", indexMismatch = "index-mismatch"
        case missingCheck = "missing-check", extraCheck = "extra-check", checkMismatch = "check-mismatch"
        case missingEnum = "missing-enum", enumMismatch = "enum-mismatch"
        case unenforcedRelation = "unenforced-relation"
        /// The same thing under another name: drift for the tool that names it, harmless to the data.
        case nameMismatch = "name-mismatch"
    }

    public var kind: Kind
    /// `user_credits.user_id` (the schema shown when it is not `public`).
    public var object: String
    public var declared: String?
    public var live: String?
    public var fix: String
    /// Which app's declaration: `drizzle`, `sqlmodel`.
    public var source: String
    /// A notice is reported but is not drift (the exit status stays 0): a name that differs alone.
    public var notice: Bool

    public var message: String {
        var text = "\(source): \(kind.rawValue) \(object)"
        switch (declared, live) {
        case (let d?, let l?): text += ": declared \(d); the database has \(l)"
        case (let d?, nil): text += ": declared \(d); the database has none"
        case (nil, let l?): text += ": the database has \(l); not declared"
        default: break
        }
        return text + ": " + fix
    }
}

/// `tally db drift`: the live database against what an app declares.
public struct DriftReport: Sendable, Codable {
    public var source: String
    public var findings: [DriftFinding]
    public var hasDrift: Bool { findings.contains { !$0.notice } }
}

public enum Drift {
    /// Creates `declaration` in a scratch database on the live database's server (so PostgreSQL spells both
    /// sides), reads both catalogs over the declaration's schemas, and compares them.
    public static func check(
        _ declaration: Declaration, against live: ConnectionSettings, historyTable: HistoryTable = .drizzleDefault,
        progress: @Sendable (String) -> Void = { _ in }
    ) async throws -> DriftReport {
        let schemas = Array(Set(declaration.tables.map(schemaOf) + declaration.enums.map(schemaOf))).sorted()
        let targetSchemas = Array(Set(schemas + declaration.foreignKeys.map { schemaOf($0.targetTable) })).sorted()
        let actual = try await withSingleConnection(live) { try await Catalog.read(on: $0, schemas: targetSchemas) }
        let declared = try await SchemaObjects.withScratchDatabase(
            live, purpose: "tally db drift", history: historyTable, otherwise: "or run it as a user that may create databases"
        ) { scratch in
            progress("Creating what \(declaration.source) declares in scratch database \(scratch.database).")
            return try await withSingleConnection(scratch) { connection in
                for statement in declaration.statements {
                    do {
                        try await connection.run(statement)
                    } catch {
                        throw MigrateError(
                            .invalidDeclaration,
                            "\(declaration.source): PostgreSQL refuses what it declares (\(TallyPostgres.describe(error))) in:\n\(statement)")
                    }
                }
                try await createForeignKeys(declaration, standIns: actual, on: connection)
                for statement in declaration.indexStatements {
                    do {
                        try await connection.run(statement)
                    } catch {
                        throw MigrateError(.invalidDeclaration, "\(declaration.source): PostgreSQL refuses an index it declares (\(TallyPostgres.describe(error))): \(statement)", underlying: error)
                    }
                }
                return try await Catalog.read(on: connection, schemas: schemas)
            }
        }
        return DriftReport(
            source: declaration.source, findings: compare(declared: declared, live: actual, declaration: declaration, historyTable: historyTable))
    }

    /// Creates the declaration's separate foreign keys; a target table it does not declare gets a stand-in
    /// with the live table's referenced columns (a model maps `user_credits` and points at `users` it does
    /// not map). A target the live database lacks as well is left out: its key cannot exist there either.
    static func createForeignKeys(_ declaration: Declaration, standIns live: Catalog, on connection: DatabaseConnection) async throws {
        var created = Set(declaration.tables)
        for key in declaration.foreignKeys {
            if !created.contains(key.targetTable) {
                guard let table = live.tables[key.targetTable], key.targetColumns.allSatisfy({ table.column($0) != nil }) else { continue }
                let columns = key.targetColumns.compactMap { table.column($0) }
                try await connection.run("CREATE SCHEMA IF NOT EXISTS \(quoteIdentifier(table.schema))")
                try await connection.run("""
                    CREATE TABLE IF NOT EXISTS \(quoteIdentifier(table.schema)).\(quoteIdentifier(table.name)) (\(columns.map { "\(quoteIdentifier($0.name)) \($0.type)" }.joined(separator: ", ")), \
                    UNIQUE (\(columns.map { quoteIdentifier($0.name) }.joined(separator: ", "))))
                    """)
                created.insert(key.targetTable)
            }
            let (schema, name) = (schemaOf(key.table), String(key.table.dropFirst(schemaOf(key.table).count + 1)))
            let (targetSchema, targetName) = (schemaOf(key.targetTable), String(key.targetTable.dropFirst(schemaOf(key.targetTable).count + 1)))
            var statement = "ALTER TABLE \(quoteIdentifier(schema)).\(quoteIdentifier(name)) ADD \(key.name.map { "CONSTRAINT \(quoteIdentifier($0)) " } ?? "")FOREIGN KEY (\(key.columns.map(quoteIdentifier).joined(separator: ", "))) REFERENCES \(quoteIdentifier(targetSchema)).\(quoteIdentifier(targetName)) (\(key.targetColumns.map(quoteIdentifier).joined(separator: ", ")))"
            if let action = key.onDelete { statement += " ON DELETE \(action)" }
            if let action = key.onUpdate { statement += " ON UPDATE \(action)" }
            do {
                try await connection.run(statement)
            } catch {
                throw MigrateError(.invalidDeclaration, "\(declaration.source): PostgreSQL refuses a foreign key it declares (\(TallyPostgres.describe(error))): \(statement)", underlying: error)
            }
        }
    }

    /// The differences between `declared` (the app's declaration, as PostgreSQL stores it) and `live`.
    public static func compare(declared: Catalog, live: Catalog, declaration: Declaration, historyTable: HistoryTable = .drizzleDefault) -> [DriftFinding] {
        var out: [DriftFinding] = []
        let label = declaration.label
        let whole = declaration.coversWholeTables
        func add(_ kind: DriftFinding.Kind, _ object: String, _ declared: String?, _ live: String?, _ fix: String, notice: Bool = false) {
            out.append(DriftFinding(kind: kind, object: object, declared: declared, live: live, fix: fix, source: label, notice: notice))
        }
        for key in declaration.enums.sorted() {
            guard let values = declared.enums[key] else { continue }
            let name = display(key)
            guard let liveValues = live.enums[key] else {
                add(.missingEnum, name, values.joined(separator: ", "), nil, "create it: CREATE TYPE \(key) AS ENUM (\(values.map(quoteLiteral).joined(separator: ", ")))")
                continue
            }
            if declaration.enumOrderKnown ? values != liveValues : Set(values) != Set(liveValues) {
                add(.enumMismatch, name, values.joined(separator: ", "), liveValues.joined(separator: ", "),
                    "make the labels and their order agree (ALTER TYPE … ADD VALUE adds one; removing one needs a new type)")
            }
        }
        for key in declaration.tables.sorted() {
            guard let d = declared.tables[key] else { continue }
            let tableName = display(key)
            guard let l = live.tables[key] else {
                add(.missingTable, tableName, "a table of \(d.columns.count) column(s)", nil, "apply the migration that creates it (tally migrate status shows what is pending)")
                continue
            }
            for dc in d.columns {
                let object = "\(tableName).\(dc.name)"
                guard let lc = l.column(dc.name) else {
                    add(.missingColumn, object, describe(dc), nil, "add it: ALTER TABLE \(key) ADD COLUMN \(quoteIdentifier(dc.name)) \(dc.type)\(dc.notNull ? " NOT NULL" : "")\(dc.defaultValue.map { " DEFAULT \($0)" } ?? "")")
                    continue
                }
                if dc.type != lc.type, whole || !compatible(declared: dc.type, live: lc.type) {
                    add(.typeMismatch, object, dc.type, lc.type, "change one to match the other: ALTER TABLE \(key) ALTER COLUMN \(quoteIdentifier(dc.name)) TYPE \(dc.type), or the app's model to \(lc.type)")
                }
                if dc.notNull != lc.notNull {
                    add(.nullabilityMismatch, object, dc.notNull ? "NOT NULL" : "nullable", lc.notNull ? "NOT NULL" : "nullable",
                        dc.notNull ? "ALTER TABLE \(key) ALTER COLUMN \(quoteIdentifier(dc.name)) SET NOT NULL (after filling NULLs), or make the model nullable"
                            : "the app may write NULL, which the database refuses: make the model not nullable, or DROP NOT NULL")
                }
                if dc.identity != lc.identity {
                    add(.identityMismatch, object, dc.identity.map { "identity \($0)" } ?? "no identity", lc.identity.map { "identity \($0)" } ?? "no identity",
                        "make both agree on GENERATED \(dc.identity?.uppercased() ?? "…") AS IDENTITY")
                } else if dc.generated != lc.generated {
                    add(.generatedMismatch, object, dc.generated.map { "generated as \($0)" } ?? "not generated", lc.generated.map { "generated as \($0)" } ?? "not generated",
                        "make the generation expressions agree")
                } else if dc.identity == nil, dc.generated == nil, dc.defaultValue != lc.defaultValue, whole || dc.defaultValue != nil {
                    add(.defaultMismatch, object, dc.defaultValue ?? "no default", lc.defaultValue ?? "no default",
                        dc.defaultValue.map { "ALTER TABLE \(key) ALTER COLUMN \(quoteIdentifier(dc.name)) SET DEFAULT \($0), or change the model" }
                            ?? "the model declares no default: declare it (server_default=…) or DROP DEFAULT")
                }
            }
            for lc in l.columns where d.column(lc.name) == nil {
                let object = "\(tableName).\(lc.name)"
                if whole {
                    add(.extraColumn, object, nil, describe(lc), "declare it in the app's schema, or drop it once nothing reads it")
                } else if lc.notNull, lc.defaultValue == nil, lc.identity == nil, lc.generated == nil {
                    add(.unmappedRequiredColumn, object, nil, describe(lc), "the model leaves it out but the database requires it (NOT NULL, no default): the app's inserts fail; map it, or give it a default")
                }
            }
            let dKey = d.primaryKey?.columns ?? []
            let lKey = l.primaryKey?.columns ?? []
            if dKey != lKey {
                add(.primaryKeyMismatch, tableName, dKey.isEmpty ? "no primary key" : "PRIMARY KEY (\(dKey.joined(separator: ", ")))",
                    lKey.isEmpty ? "no primary key" : "PRIMARY KEY (\(lKey.joined(separator: ", ")))", "make the keys agree")
            } else if whole, let dn = d.primaryKey?.name, let ln = l.primaryKey?.name, dn != ln {
                add(.nameMismatch, tableName, "primary key \(dn)", "primary key \(ln)", "rename one: ALTER TABLE \(key) RENAME CONSTRAINT \(quoteIdentifier(ln)) TO \(quoteIdentifier(dn))", notice: true)
            }
            // Each declared key takes the live key of its shape with the same actions (and name) first: a table may
            // hold two keys of one shape (the seed's user_credits.team_id did), and only the spare one is drift.
            var unmatched = l.foreignKeys
            let declaredShapes = Set(d.foreignKeys.map(\.shape))
            for fk in d.foreignKeys {
                let object = "\(tableName).\(fk.columns.joined(separator: ","))"
                let candidates = unmatched.filter { $0.shape == fk.shape }
                guard let match = candidates.first(where: { $0.actions == fk.actions && $0.name == fk.name })
                    ?? candidates.first(where: { $0.actions == fk.actions }) ?? candidates.first else {
                    add(.missingForeignKey, object, describe(fk), nil,
                        "add it without a long lock: ALTER TABLE \(key) ADD CONSTRAINT \(quoteIdentifier(fk.name)) FOREIGN KEY (\(fk.columns.map(quoteIdentifier).joined(separator: ", "))) REFERENCES \(fk.referencedTable)(\(fk.referencedColumns.map(quoteIdentifier).joined(separator: ", "))) \(fk.actions) NOT VALID, then VALIDATE CONSTRAINT (tally db orphans finds the rows that would fail)")
                    continue
                }
                unmatched.removeAll { $0.name == match.name }
                if match.actions != fk.actions {
                    add(.foreignKeyActionMismatch, object, "\(fk.name) \(fk.actions)", "\(match.name) \(match.actions)",
                        "make the actions agree: what the app expects on delete is not what the database does")
                } else if whole, match.name != fk.name {
                    add(.nameMismatch, object, "foreign key \(fk.name)", "foreign key \(match.name)",
                        "rename one: ALTER TABLE \(key) RENAME CONSTRAINT \(quoteIdentifier(match.name)) TO \(quoteIdentifier(fk.name))", notice: true)
                }
            }
            for fk in unmatched {
                let object = "\(tableName).\(fk.columns.joined(separator: ","))"
                if declaredShapes.contains(fk.shape) {
                    // A second key of a declared shape: every write checks both.
                    if whole { add(.extraForeignKey, object, nil, describe(fk), "a second key of the same columns and target: drop it") }
                } else if whole {
                    add(.extraForeignKey, object, nil, describe(fk), "declare it in the app's schema (.references(…)), or drop it")
                } else if fk.columns.allSatisfy({ d.column($0) != nil }) {
                    let target = "\(display(fk.referencedTable)).\(fk.referencedColumns.joined(separator: ","))"
                    add(.extraForeignKey, object, "no ForeignKey", describe(fk),
                        "add foreign_key=\"\(target)\"\(fk.onDelete == "NO ACTION" ? "" : " (ondelete=\"\(fk.onDelete)\")") to the model's \(fk.columns.joined(separator: ", "))")
                }
            }
            compareConstraints(d.uniques, l.uniques, key: key, tableName: tableName, kinds: (.missingUnique, .extraUnique, .missingUnique), whole: whole, table: d, add: add)
            // A model rarely declares its checks: one it leaves out is a notice, not drift.
            compareConstraints(d.checks, l.checks, key: key, tableName: tableName, kinds: (.missingCheck, .extraCheck, .checkMismatch), whole: whole, table: d,
                               partialExtraIsNotice: true, add: add)
            let liveIndexes = Dictionary(l.indexes.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            for index in d.indexes {
                let object = "\(tableName) index \(index.name)"
                if let match = liveIndexes[index.name] {
                    if match.statement != index.statement {
                        add(.indexMismatch, object, index.statement, match.statement, "recreate it: DROP INDEX CONCURRENTLY, then CREATE \(index.unique ? "UNIQUE " : "")INDEX CONCURRENTLY \(quoteIdentifier(index.name)) ON \(key) \(index.definition)")
                    }
                } else if let other = l.indexes.first(where: { $0.statement == index.statement }) {
                    if whole { add(.nameMismatch, object, "index \(index.name)", "index \(other.name)", "ALTER INDEX \(quoteIdentifier(l.schema)).\(quoteIdentifier(other.name)) RENAME TO \(quoteIdentifier(index.name))", notice: true) }
                } else {
                    add(.missingIndex, object, index.statement, nil, "CREATE \(index.unique ? "UNIQUE " : "")INDEX CONCURRENTLY \(quoteIdentifier(index.name)) ON \(key) \(index.definition)")
                }
            }
            for index in l.indexes where !d.indexes.contains(where: { $0.name == index.name || $0.statement == index.statement }) {
                add(.extraIndex, "\(tableName) index \(index.name)", nil, index.statement,
                    whole ? "declare it in the app's schema (index(…)), or drop it" : "the model does not declare it (index=True or Index(…)); harmless to the app",
                    notice: !whole)
            }
        }
        for relation in declaration.relations where !relation.keyDeclared {
            let enforced = live.tables[relation.table]?.foreignKeys.contains {
                $0.columns == relation.columns && $0.referencedTable == relation.targetTable && $0.referencedColumns == relation.targetColumns
            } ?? false
            if !enforced {
                let object = "\(display(relation.table)).\(relation.columns.joined(separator: ","))"
                add(.unenforcedRelation, object, "relationship \(relation.name) → \(display(relation.targetTable))(\(relation.targetColumns.joined(separator: ", ")))", "no foreign key",
                    "nothing keeps these rows pointing at real ones: declare foreign_key=\"\(display(relation.targetTable)).\(relation.targetColumns.joined(separator: ","))\" in the model and add the constraint (NOT VALID, then VALIDATE; tally db orphans finds the rows that would fail)")
            }
        }
        if whole {
            let declaredTables = Set(declaration.tables)
            let schemas = Set(declaration.tables.map(schemaOf))
            for (key, table) in live.tables.sorted(by: { $0.key < $1.key }) where schemas.contains(table.schema) && !declaredTables.contains(key) {
                if table.name == historyTable.table || table.name.hasPrefix("__drizzle_migrations") || table.name.hasPrefix("__tally_") { continue }
                add(.extraTable, display(key), nil, "a table of \(table.columns.count) column(s)", "declare it in the app's schema, or leave it to the app that owns it (an ownership manifest says which)")
            }
        }
        return out
    }

    static func compareConstraints(
        _ declared: [Catalog.Constraint], _ live: [Catalog.Constraint], key: String, tableName: String,
        kinds: (missing: DriftFinding.Kind, extra: DriftFinding.Kind, changed: DriftFinding.Kind), whole: Bool, table: Catalog.Table,
        partialExtraIsNotice: Bool = false, add: (DriftFinding.Kind, String, String?, String?, String, Bool) -> Void
    ) {
        for constraint in declared {
            let object = "\(tableName) \(constraint.name)"
            if let match = live.first(where: { $0.name == constraint.name }) {
                if match.definition != constraint.definition {
                    add(kinds.changed, object, constraint.definition, match.definition, "make the definitions agree", false)
                }
            } else if let other = live.first(where: { $0.definition == constraint.definition }) {
                if whole { add(.nameMismatch, object, constraint.name, other.name, "ALTER TABLE \(key) RENAME CONSTRAINT \(quoteIdentifier(other.name)) TO \(quoteIdentifier(constraint.name))", true) }
            } else {
                add(kinds.missing, object, constraint.definition, nil, "ALTER TABLE \(key) ADD CONSTRAINT \(quoteIdentifier(constraint.name)) \(constraint.definition)", false)
            }
        }
        for constraint in live where !declared.contains(where: { $0.name == constraint.name || $0.definition == constraint.definition }) {
            guard whole || constraint.columns.allSatisfy({ table.column($0) != nil }) else { continue }
            add(kinds.extra, "\(tableName) \(constraint.name)", nil, constraint.definition,
                whole ? "declare it in the app's schema, or drop it" : "the model does not declare it; the database enforces it", !whole && partialExtraIsNotice)
        }
    }

    /// Types an ORM model and the database may disagree on without harm to the app: an unbounded `VARCHAR`
    /// (SQLModel's `str`) and `text`; a model's integer on a bigint column.
    static func compatible(declared: String, live: String) -> Bool {
        switch (declared, live) {
        case ("character varying", "text"), ("text", "character varying"), ("integer", "bigint"): true
        default: false
        }
    }

    static func schemaOf(_ key: String) -> String { String(key.split(separator: ".", maxSplits: 1).first ?? "public") }

    /// `schema.table` without `public.`.
    static func display(_ key: String) -> String { key.hasPrefix("public.") ? String(key.dropFirst(7)) : key }

    static func describe(_ column: Catalog.Column) -> String {
        var text = column.type + (column.notNull ? " NOT NULL" : "")
        if let identity = column.identity { text += " GENERATED \(identity.uppercased()) AS IDENTITY" }
        if let value = column.defaultValue { text += " DEFAULT \(value)" }
        return text
    }

    static func describe(_ key: Catalog.ForeignKey) -> String {
        "\(key.name) → \(display(key.referencedTable))(\(key.referencedColumns.joined(separator: ", "))) \(key.actions)"
    }
}

extension DriftReport {
    /// GitHub Actions workflow commands, one line per finding: drift as an error, a name alone as a notice.
    public var githubAnnotations: [String] {
        findings.map { finding in
            let title = Plan.escapeProperty("tally drift \(finding.kind.rawValue) \(finding.object)")
            return "::\(finding.notice ? "notice" : "error") title=\(title)::\(Plan.escapeData(finding.message))"
        }
    }
}
