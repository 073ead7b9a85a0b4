import Foundation
import PostgresNIO
import TallyPostgres

/// What lint knows of the live database, looked up once per object while a plan is made.
final class LiveFacts {
    struct Table {
        var rows: Int64
        /// `rows` is the planner's estimate (the table is too big to count).
        var estimated: Bool
        /// Planned in a scratch database (`--scratch`): the table's real rows are not known, so it counts as filled.
        var unknown = false
    }

    let connection: DatabaseConnection
    /// The database is a scratch copy of the schema: its empty tables stand for production's filled ones.
    let rowsUnknown: Bool
    private var tables: [QualifiedName: Table?] = [:]
    static let countCap: Int64 = 100_000

    init(connection: DatabaseConnection, rowsUnknown: Bool = false) {
        self.connection = connection
        self.rowsUnknown = rowsUnknown
    }

    /// The live table, or nil when there is none (a table the pending migrations create).
    func table(_ name: QualifiedName) async throws -> Table? {
        if let known = tables[name] { return known }
        var estimate: Double?
        for try await tuples in try await connection.query(
            "SELECT c.reltuples::float8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = \(name.schema) AND c.relname = \(name.name) AND c.relkind IN ('r', 'p', 'm')"
        ).decode(Double.self) {
            estimate = tuples
        }
        var found: Table?
        if let estimate {
            var counted: Int64 = 0
            for try await n in try await connection.query(PostgresQuery(unsafeSQL: "SELECT count(*) FROM (SELECT 1 FROM \(name.sql) LIMIT \(Self.countCap + 1)) s")).decode(Int64.self) {
                counted = n
            }
            if counted > Self.countCap {
                found = Table(rows: max(counted, Int64(estimate)), estimated: true)
            } else {
                // In a scratch copy an empty table stands for production's, whose rows are not known here.
                found = Table(rows: counted, estimated: false, unknown: rowsUnknown && counted == 0)
            }
        }
        tables[name] = found
        return found
    }

    /// True when a query returns a row.
    func exists(_ query: PostgresQuery) async throws -> Bool {
        var found = false
        for try await _ in try await connection.query(query) { found = true }
        return found
    }

    /// The table an index (as written) belongs to, when the index is live.
    func tableOfIndex(_ name: String) async throws -> QualifiedName? {
        for try await (schema, table) in try await connection.query(
            "SELECT n.nspname::text, c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE i.indexrelid = to_regclass(\(name))"
        ).decode((String, String).self) {
            return QualifiedName(schema: schema, name: table)
        }
        return nil
    }

    /// Any function of that name the live database marks volatile.
    func isVolatile(function name: String) async throws -> Bool {
        try await exists("SELECT 1 FROM pg_proc WHERE proname = \(name) AND provolatile = 'v'")
    }

    /// The live column's type as `format_type` writes it (`character varying(100)`), or nil.
    func columnType(_ table: QualifiedName, _ column: String) async throws -> (name: String, modifier: Int)? {
        for try await (type, modifier) in try await connection.query(
            "SELECT t.typname::text, a.atttypmod FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid WHERE a.attrelid = to_regclass(\(table.sql)) AND a.attname = \(column) AND NOT a.attisdropped"
        ).decode((String, Int32).self) {
            return (type, Int(modifier))
        }
        return nil
    }

    /// A validated CHECK constraint on the live table that proves `column IS NOT NULL` (PostgreSQL 12+ then skips SET NOT NULL's scan).
    func hasValidatedNotNullCheck(_ table: QualifiedName, _ column: String) async throws -> Bool {
        try await exists("""
            SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass(\(table.sql)) AND contype = 'c' AND convalidated
            AND regexp_replace(pg_get_constraintdef(oid), '[()"]', '', 'g') = 'CHECK ' || \(column) || ' IS NOT NULL'
            """)
    }

    /// Filled live tables with a column of the domain, with their rows.
    func tablesUsing(domain: String) async throws -> [(QualifiedName, Table)] {
        var names: [QualifiedName] = []
        for try await (schema, table) in try await connection.query(
            "SELECT DISTINCT n.nspname::text, c.relname::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE a.atttypid = to_regtype(\(domain)) AND c.relkind IN ('r', 'p') AND NOT a.attisdropped ORDER BY 1, 2"
        ).decode((String, String).self) {
            names.append(QualifiedName(schema: schema, name: table))
        }
        var out: [(QualifiedName, Table)] = []
        for name in names { if let table = try await table(name), table.rows > 0 || table.unknown { out.append((name, table)) } }
        return out
    }
}

/// One migration's lint state: what it creates, what it added NOT VALID, its BEGINs.
struct LintScope {
    var facts: LiveFacts
    /// Tables the pending migrations create (up to and including this one).
    var newTables: Set<QualifiedName>
    /// The migration runs in one transaction (Tally's), not statement by statement.
    var transactional: Bool
    var onlineRewrite = false
    var statementCount: Int
    /// Constraints this migration added NOT VALID so far (table, name).
    var addedNotValid: Set<String> = []
    var openTransactions = 0
}

/// Lock modes and lint rules (squawk's names, `LintRules`) for single statements, read from their parse trees
/// and judged against the live database.
enum Lint {
    /// `tree`: the statement's whole parse tree (`SQLStatement.tree`, read once by the caller for both passes).
    static func locks(_ statement: SQLStatement, tree: ParseTree, newTables: Set<QualifiedName>, onlineRewrite: Bool) -> [Plan.Lock] {
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
            let names = tree.fields?["objects"]?.array.map { $0.node("List")?["items"]?.names ?? [] } ?? []
            return names.map { parts in
                let table = parts.count > 1 ? QualifiedName(schema: parts[parts.count - 2], name: parts.last!) : QualifiedName(name: parts.last ?? "")
                return .init(table: table.description, mode: "ACCESS EXCLUSIVE", effect: "blocks everything until it commits")
            }
        case .drop(let drop) where drop.removeType == "OBJECT_INDEX":
            let concurrent = drop.concurrent == true
            return [.init(table: "(the index's table)", mode: concurrent ? "SHARE UPDATE EXCLUSIVE" : "ACCESS EXCLUSIVE",
                          effect: concurrent ? "reads and writes go on" : "blocks everything until it commits")]
        case .dml(_, let relation):
            return [.init(table: relation?.qualifiedName.description ?? "(rows it touches)", mode: "ROW EXCLUSIVE", effect: "row locks; long if it touches many rows")]
        default:
            if let rename = tree.node("RenameStmt"), let relation = rename["relation"] {
                let table = qualified(relation)
                let effect = newTables.contains(table) ? "new table: nothing else uses it yet" : "a moment, but it waits behind every open transaction on it, and everything queued after it waits too"
                return [.init(table: table.description, mode: "ACCESS EXCLUSIVE", effect: effect)]
            }
            if let truncate = tree.node("TruncateStmt") {
                return truncate["relations"]?.array.compactMap { $0.node("RangeVar").map(qualified) }.map {
                    .init(table: $0.description, mode: "ACCESS EXCLUSIVE", effect: "blocks everything until it commits")
                } ?? []
            }
            return []
        }
    }

    /// What a lock mode keeps waiting.
    static func blocks(_ mode: String) -> String {
        switch mode {
        case "ACCESS EXCLUSIVE": "every read and write of it waits"
        case "SHARE", "SHARE ROW EXCLUSIVE": "every write to it (INSERT, UPDATE, DELETE) waits; reads go on"
        default: "other schema changes of it wait"
        }
    }

    /// "accounts (5,000 rows)" or "accounts (about 1,200,000 rows)".
    static func describe(_ table: QualifiedName, _ facts: LiveFacts.Table) -> String {
        let formatter = NumberFormatter()
        formatter.numberStyle = .decimal
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.groupingSeparator = ","
        formatter.usesGroupingSeparator = true
        let count = formatter.string(from: NSNumber(value: facts.rows)) ?? "\(facts.rows)"
        let name = table.schema == "public" ? table.name : table.description
        if facts.unknown { return "\(name) (rows unknown: planned in a scratch database, so taken as filled)" }
        return "\(name) (\(facts.estimated ? "about " : "")\(count) row\(facts.rows == 1 ? "" : "s"))"
    }

    /// The live table with rows, unless the pending migrations create it.
    static func filled(_ table: QualifiedName, _ scope: LintScope) async throws -> LiveFacts.Table? {
        guard !scope.newTables.contains(table), let facts = try await scope.facts.table(table), facts.rows > 0 || facts.unknown else { return nil }
        return facts
    }

    /// The live table (rows or none), unless the pending migrations create it.
    static func live(_ table: QualifiedName, _ scope: LintScope) async throws -> LiveFacts.Table? {
        guard !scope.newTables.contains(table) else { return nil }
        return try await scope.facts.table(table)
    }

    static func finding(_ rule: String, _ severity: String, _ message: String, table: QualifiedName? = nil, rows: LiveFacts.Table? = nil) -> Plan.Finding {
        Plan.Finding(rule: rule, severity: severity, message: message, table: table?.description, rows: rows?.unknown == true ? nil : rows?.rows)
    }

    /// A lock held for a scan, rewrite or build on a filled table: what, on which table, with how many rows, what waits, the fix.
    static func lockFinding(_ rule: String, _ what: String, _ table: QualifiedName, _ facts: LiveFacts.Table, mode: String, fix: String, severity: String = "warning") -> Plan.Finding {
        finding(rule, severity, "\(what). \(describe(table, facts)) stays locked \(mode) until it is done: \(blocks(mode)). \(fix)", table: table, rows: facts)
    }

    static func check(_ statement: SQLStatement, tree: ParseTree, scope: inout LintScope) async throws -> [Plan.Finding] {
        var findings: [Plan.Finding] = []
        guard let type = tree.type, let f = tree.fields else { return [] }
        switch type {
        case "AlterTableStmt":
            findings += try await alterTable(statement, f, scope: &scope)
        case "CreateStmt":
            for column in f["tableElts"]?.array.compactMap({ $0.node("ColumnDef") }) ?? [] { findings += style(column) }
            if f["relation"]?["schemaname"] == nil, let name = f["relation"]?["relname"]?.string {
                findings.append(finding("require-table-schema", "info", "CREATE TABLE \(name) names no schema: it lands in the first schema of the search_path"))
            }
        case "IndexStmt":
            findings += try await createIndex(statement, f, scope: scope)
        case "DropStmt":
            findings += try await drop(f, scope: scope)
        case "DropdbStmt":
            findings.append(finding("ban-drop-database", "error", "DROP DATABASE \(f["dbname"]?.string ?? "") in a migration: remove it; a database is dropped by hand, after a backup"))
        case "RenameStmt":
            findings += try await rename(f, scope: scope)
        case "AlterObjectSchemaStmt":
            if try await objectIsLive(f, scope: scope) {
                findings.append(finding("ban-set-schema", "warning", "SET SCHEMA moves a live object: code that names it by its old schema breaks; deploy code that uses the new name first"))
            }
        case "AlterDomainStmt" where f["subtype"]?.string == "C":
            let domain = f["typeName"]?.names.joined(separator: ".") ?? ""
            let using = try await scope.facts.tablesUsing(domain: domain)
            if !using.isEmpty {
                let rows = using.map { describe($0.0, $0.1) }.joined(separator: ", ")
                findings.append(Plan.Finding(
                    rule: "ban-alter-domain-with-add-constraint", severity: "warning",
                    message: "ALTER DOMAIN \(domain) ADD CONSTRAINT checks every row of \(rows) under a lock: every write to them waits. Add it NOT VALID, then VALIDATE CONSTRAINT in another migration",
                    table: using.first?.0.description, rows: using.contains { $0.1.unknown } ? nil : using.reduce(0) { $0 + $1.1.rows }))
            }
        case "CreateDomainStmt":
            if f["constraints"]?.array.contains(where: { $0.node("Constraint")?["contype"]?.string == "CONSTR_CHECK" }) == true {
                findings.append(finding("ban-create-domain-with-constraint", "info", "a domain with a CHECK: adding or changing its constraints later checks every table that uses it under lock; a CHECK on each column is easier to change"))
            }
        case "AlterEnumStmt":
            if f["oldVal"] == nil, let value = f["newVal"]?.string {
                if f["newValNeighbor"] == nil {
                    findings.append(finding("require-enum-value-ordering", "info", "ADD VALUE '\(value)' without BEFORE or AFTER puts it last in the enum's sort order; say where it belongs"))
                }
                findings.append(finding("ban-add-enum-value", "info", "ADD VALUE '\(value)': consumers that match the enum's values exhaustively meet a value they do not know"))
            }
        case "TruncateStmt" where f["behavior"]?.string == "DROP_CASCADE":
            var anyLive = false
            for relation in f["relations"]?.array.compactMap({ $0.node("RangeVar") }) ?? [] where try await live(qualified(relation), scope) != nil { anyLive = true }
            guard anyLive else { break }
            findings.append(finding("ban-truncate-cascade", "warning", "TRUNCATE … CASCADE also empties every table with a foreign key to these, recursively; name each table to truncate instead"))
        case "TransactionStmt":
            findings += transaction(f, statement, scope: &scope)
        case "ReindexStmt" where !statement.cannotRunInTransaction:
            findings += try await reindex(f, scope: scope)
        case "VacuumStmt":
            let full = f["options"]?.array.contains { $0.node("DefElem")?["defname"]?.string == "full" && $0.node("DefElem")?["arg"].map { $0.node("Integer")?["ival"]?.int != 0 } ?? true } ?? false
            if full {
                for relation in f["rels"]?.array.compactMap({ $0.node("VacuumRelation")?["relation"] }) ?? [] {
                    let table = qualified(relation)
                    if let facts = try await filled(table, scope) {
                        findings.append(lockFinding("prefer-repack", "VACUUM FULL rewrites the table", table, facts, mode: "ACCESS EXCLUSIVE",
                                                    fix: "Use pg_repack (or, from PostgreSQL 19, REPACK CONCURRENTLY) to rewrite it online"))
                    }
                }
            }
        case "ClusterStmt":
            if let relation = f["relation"] {
                let table = qualified(relation)
                if let facts = try await filled(table, scope) {
                    findings.append(lockFinding("prefer-repack", "CLUSTER rewrites the table", table, facts, mode: "ACCESS EXCLUSIVE",
                                                fix: "Use pg_repack (or, from PostgreSQL 19, REPACK CONCURRENTLY) to rewrite it online"))
                }
            }
        case "UpdateStmt":
            let names = f["targetList"]?.array.compactMap { $0.node("ResTarget")?["name"]?.string } ?? []
            let repeated = Set(names.filter { name in names.filter { $0 == name }.count > 1 })
            if !repeated.isEmpty {
                findings.append(finding("ban-duplicate-column-assignments", "error", "UPDATE sets \(repeated.sorted().joined(separator: ", ")) more than once: PostgreSQL refuses it (multiple assignments to same column)"))
            }
        case "GrantStmt" where f["is_grant"]?.isTrue != true:
            findings.append(finding("ban-revoke", "info", "REVOKE: a service that relied on the privilege fails on its next query"))
        case "ViewStmt" where f["replace"]?.isTrue == true:
            if let view = f["view"], try await scope.facts.exists("SELECT 1 WHERE to_regclass(\(qualified(view).sql)) IS NOT NULL") {
                findings.append(finding("ban-replace-view-function", "info", "CREATE OR REPLACE VIEW of a live view: readers see the new definition at once"))
            }
        case "CreateFunctionStmt" where f["replace"]?.isTrue == true:
            let name = f["funcname"]?.names.last ?? ""
            if try await scope.facts.exists("SELECT 1 FROM pg_proc WHERE proname = \(name)") {
                findings.append(finding("ban-replace-view-function", "info", "CREATE OR REPLACE FUNCTION \(name): callers get the new body at once"))
            }
        case "CreatePolicyStmt":
            findings.append(finding("ban-create-policy", "info", "CREATE POLICY: once row level security is on, rows outside the policy vanish for the roles it names"))
        case "AlterPolicyStmt":
            if f["qual"] != nil || f["with_check"] != nil {
                findings.append(finding("ban-alter-policy-condition", "info", "ALTER POLICY changes which rows its roles see or may write"))
            }
            if f["roles"] != nil {
                findings.append(finding("ban-alter-policy-roles", "info", "ALTER POLICY … TO changes which roles it applies to"))
            }
        case "AlterFunctionStmt":
            findings.append(finding("ban-alter-function-options", "info", "ALTER FUNCTION options change how every caller's calls run"))
        case "AlterRoleStmt", "AlterRoleSetStmt":
            findings.append(finding("ban-alter-role-options", "info", "ALTER ROLE in a migration changes what a service's login may do"))
        case "AlterDatabaseStmt", "AlterDatabaseSetStmt":
            findings.append(finding("ban-alter-database-options", "info", "ALTER DATABASE changes settings for every session"))
        case "AlterSystemStmt":
            findings.append(finding("ban-alter-system-options", "info", "ALTER SYSTEM changes the server's configuration for every database"))
        case "AlterSeqStmt":
            findings.append(finding("ban-alter-sequence-values", "info", "ALTER SEQUENCE changes the values later inserts get"))
        case "AlterExtensionStmt", "AlterExtensionContentsStmt":
            findings.append(finding("ban-alter-extension", "info", "ALTER EXTENSION changes functions and types code relies on"))
        default: break
        }
        for name in truncatedIdentifiers(statement) {
            findings.append(finding("identifier-too-long", "error",
                                    "an identifier starting \"\(name.prefix(20))…\" is longer than 63 bytes; PostgreSQL truncates it to \"\(name)\", so the object gets a different name than the one the code expects"))
        }
        return findings
    }

    static func qualified(_ relation: ParseTree) -> QualifiedName {
        QualifiedName(schema: relation["schemaname"]?.string ?? "public", name: relation["relname"]?.string ?? "")
    }

    private static func alterTable(_ statement: SQLStatement, _ f: ParseTree, scope: inout LintScope) async throws -> [Plan.Finding] {
        guard let relation = f["relation"] else { return [] }
        let table = qualified(relation)
        var findings: [Plan.Finding] = []
        let objtype = f["objtype"]?.string ?? "OBJECT_TABLE"
        let commands = f["cmds"]?.array.compactMap { $0.node("AlterTableCmd") } ?? []
        if objtype == "OBJECT_TYPE" {
            if commands.contains(where: { $0["subtype"]?.string == "AT_AddColumn" }) {
                findings.append(finding("ban-add-composite-attribute", "info", "ADD ATTRIBUTE to a composite type: code that builds or reads its values by position breaks"))
            }
            return findings
        }
        if objtype == "OBJECT_VIEW" || objtype == "OBJECT_MATVIEW" {
            if commands.contains(where: { ["AT_SetRelOptions", "AT_ResetRelOptions"].contains($0["subtype"]?.string ?? "") }) {
                findings.append(finding("ban-alter-view-options", "info", "ALTER VIEW … SET options changes how queries through it run (security_barrier, check_option)"))
            }
            return findings
        }
        if objtype == "OBJECT_TABLE", relation["schemaname"] == nil {
            findings.append(finding("require-table-schema", "info", "ALTER TABLE \(table.name) names no schema: it acts on the first match in the search_path"))
        }
        let live = try await self.live(table, scope)
        let filled = live.flatMap { $0.rows > 0 || $0.unknown ? $0 : nil }
        for command in commands {
            let subtype = command["subtype"]?.string ?? ""
            let column = command["name"]?.string
            switch subtype {
            case "AT_AddColumn":
                guard let def = command["def"]?.node("ColumnDef") else { break }
                findings += style(def)
                let constraints = def["constraints"]?.array.compactMap { $0.node("Constraint") } ?? []
                let kinds = constraints.compactMap { $0["contype"]?.string }
                if live != nil {
                    findings.append(finding("ban-add-column", "info", "ADD COLUMN \(def["colname"]?.string ?? ""): consumers that read whole rows into fixed shapes see a new field", table: table))
                    if kinds.contains("CONSTR_NOTNULL") {
                        findings.append(finding("ban-new-write-restriction", "info", "a new NOT NULL column: inserts that leave it out fail unless it has a DEFAULT", table: table))
                    }
                }
                guard let facts = filled else { break }
                if kinds.contains("CONSTR_NOTNULL"), !kinds.contains("CONSTR_DEFAULT"), !kinds.contains("CONSTR_IDENTITY"), !kinds.contains("CONSTR_GENERATED") {
                    findings.append(finding("adding-required-field", facts.unknown ? "warning" : "error",
                                            "a NOT NULL column without a DEFAULT fails on \(describe(table, facts)) if it has rows; give it a DEFAULT or add it nullable and backfill", table: table, rows: facts))
                }
                let name = def["colname"]?.string ?? ""
                if kinds.contains("CONSTR_GENERATED") {
                    findings.append(lockFinding("adding-field-with-default", "ADD COLUMN \(name) … GENERATED ALWAYS AS … STORED computes every row: a rewrite", table, facts, mode: "ACCESS EXCLUSIVE",
                                                fix: "Add a plain column, backfill it in batches, and keep it current with a trigger"))
                } else if let defaultValue = constraints.first(where: { $0["contype"]?.string == "CONSTR_DEFAULT" })?["raw_expr"] {
                    var volatile: [String] = []
                    for call in defaultValue.all("FuncCall") {
                        if let function = call["funcname"]?.names.last, try await scope.facts.isVolatile(function: function) { volatile.append(function) }
                    }
                    if !volatile.isEmpty {
                        findings.append(lockFinding("adding-field-with-default", "ADD COLUMN \(name) with a DEFAULT that calls \(volatile.joined(separator: ", "))() (volatile in this database) writes a value into every row: a rewrite", table, facts, mode: "ACCESS EXCLUSIVE",
                                                    fix: "Add the column without the default (or with a constant one), backfill in batches, then SET DEFAULT"))
                    }
                }
                if kinds.contains("CONSTR_PRIMARY") {
                    findings.append(lockFinding("adding-serial-primary-key-field", "ADD COLUMN \(name) … PRIMARY KEY builds a unique index", table, facts, mode: "ACCESS EXCLUSIVE",
                                                fix: "Add the column, CREATE UNIQUE INDEX CONCURRENTLY, then ADD PRIMARY KEY USING INDEX"))
                }
                if kinds.contains("CONSTR_UNIQUE") {
                    findings.append(lockFinding("disallowed-unique-constraint", "ADD COLUMN \(name) … UNIQUE builds a unique index", table, facts, mode: "ACCESS EXCLUSIVE",
                                                fix: "Add the column, CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT … UNIQUE USING INDEX"))
                }
            case "AT_AddConstraint":
                guard let constraint = command["def"]?.node("Constraint") else { break }
                let kind = constraint["contype"]?.string ?? ""
                let notValid = constraint["skip_validation"]?.isTrue == true
                let name = constraint["conname"]?.string
                if live != nil, ["CONSTR_CHECK", "CONSTR_UNIQUE", "CONSTR_FOREIGN", "CONSTR_PRIMARY", "CONSTR_EXCLUSION"].contains(kind) {
                    findings.append(finding("ban-new-write-restriction", "info", "a new constraint on a live table: writes that passed before can fail now", table: table))
                }
                if notValid, let name { scope.addedNotValid.insert("\(table)/\(name)") }
                switch kind {
                case "CONSTR_FOREIGN":
                    guard !notValid, let facts = filled else { break }
                    let referenced = constraint["pktable"].map(qualified)?.description ?? "the referenced table"
                    if scope.onlineRewrite {
                        findings.append(finding("adding-foreign-key-constraint", "info",
                                                "foreign key without NOT VALID on \(describe(table, facts)): Tally adds it NOT VALID and validates it in a separate transaction, so writes wait only a moment (--strict-sql would run it as written and block writes to \(table.name) and \(referenced) for a full scan)", table: table, rows: facts))
                        findings.append(finding("constraint-missing-not-valid", "info", "Tally adds this foreign key NOT VALID and validates it afterwards (see adding-foreign-key-constraint)", table: table, rows: facts))
                    } else {
                        findings.append(lockFinding("adding-foreign-key-constraint", "a foreign key without NOT VALID scans the whole table; writes to \(referenced) wait too", table, facts, mode: "SHARE ROW EXCLUSIVE",
                                                    fix: "Add it NOT VALID, then VALIDATE CONSTRAINT in another transaction"))
                        findings.append(lockFinding("constraint-missing-not-valid", "a constraint without NOT VALID checks every row", table, facts, mode: "SHARE ROW EXCLUSIVE",
                                                    fix: "Add it NOT VALID, then VALIDATE CONSTRAINT in another transaction"))
                    }
                case "CONSTR_CHECK":
                    guard !notValid, let facts = filled else { break }
                    findings.append(lockFinding("constraint-missing-not-valid", "a CHECK without NOT VALID checks every row", table, facts, mode: "ACCESS EXCLUSIVE",
                                                fix: "Add it NOT VALID, then VALIDATE CONSTRAINT in another transaction (only SHARE UPDATE EXCLUSIVE)"))
                case "CONSTR_PRIMARY" where constraint["indexname"] == nil:
                    guard let facts = filled else { break }
                    findings.append(lockFinding("adding-serial-primary-key-field", "ADD PRIMARY KEY builds a unique index", table, facts, mode: "ACCESS EXCLUSIVE",
                                                fix: "CREATE UNIQUE INDEX CONCURRENTLY first, then ADD PRIMARY KEY USING INDEX"))
                case "CONSTR_UNIQUE" where constraint["indexname"] == nil:
                    guard let facts = filled else { break }
                    findings.append(lockFinding("disallowed-unique-constraint", "ADD UNIQUE builds a unique index", table, facts, mode: "ACCESS EXCLUSIVE",
                                                fix: "CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT … UNIQUE USING INDEX"))
                default: break
                }
            case "AT_ValidateConstraint":
                if scope.transactional, let name = column, scope.addedNotValid.contains("\(table)/\(name)"), let facts = filled {
                    findings.append(lockFinding("constraint-missing-not-valid", "VALIDATE CONSTRAINT \(name) in the transaction that added it NOT VALID keeps the add's lock through the scan", table, facts, mode: "ACCESS EXCLUSIVE",
                                                fix: "Validate it in a later migration"))
                }
            case "AT_SetNotNull":
                if live != nil {
                    findings.append(finding("ban-new-write-restriction", "info", "SET NOT NULL: inserts and updates that write NULL fail now", table: table))
                }
                guard let facts = filled, let column else { break }
                if try await scope.facts.hasValidatedNotNullCheck(table, column) { break }
                findings.append(lockFinding("adding-not-nullable-field", "SET NOT NULL on \(column) checks every row", table, facts, mode: "ACCESS EXCLUSIVE",
                                            fix: "Add CHECK (\(column) IS NOT NULL) NOT VALID, VALIDATE it in another migration, then SET NOT NULL (no scan since PostgreSQL 12)"))
            case "AT_AlterColumnType":
                let def = command["def"]?.node("ColumnDef")
                if let def { findings += style(def, name: column) }
                guard let facts = filled, let column else { break }
                if def?["raw_default"] == nil, let current = try await scope.facts.columnType(table, column), let new = def?["typeName"],
                    catalogOnly(from: current, to: new)
                {
                    findings.append(finding("changing-column-type", "info",
                                            "\(column) is \(current.name)\(current.modifier > 4 ? "(\(current.modifier - 4))" : "") in the live table: this change is catalog-only (no rewrite, no scan); ACCESS EXCLUSIVE on \(describe(table, facts)) is held only a moment", table: table, rows: facts))
                } else {
                    findings.append(lockFinding("changing-column-type", "ALTER COLUMN \(column) TYPE rewrites the table and its indexes", table, facts, mode: "ACCESS EXCLUSIVE",
                                                fix: "Add a column of the new type, backfill it in batches, switch the code, then drop the old one"))
                }
            case "AT_ColumnDefault":
                guard live != nil else { break }
                if command["def"] == nil {
                    findings.append(finding("ban-drop-default", "warning", "DROP DEFAULT on \(table.name).\(column ?? ""): inserts that leave the column out now write NULL or fail", table: table))
                } else {
                    findings.append(finding("ban-set-default", "info", "SET DEFAULT on \(table.name).\(column ?? ""): inserts that leave the column out get a different value", table: table))
                }
            case "AT_DetachPartition":
                let concurrent = command["def"]?.node("PartitionCmd")?["concurrent"]?.isTrue == true
                if !concurrent, let facts = filled {
                    findings.append(lockFinding("require-concurrent-partition-detach", "DETACH PARTITION without CONCURRENTLY", table, facts, mode: "ACCESS EXCLUSIVE",
                                                fix: "DETACH PARTITION … CONCURRENTLY (in a migration of its own: it cannot run in a transaction)"))
                }
            default:
                if live != nil, let rule = compatibilityCommands[subtype] {
                    findings.append(finding(rule.rule, rule.severity, rule.message(table.name, column ?? ""), table: table))
                }
            }
        }
        return findings
    }

    /// ALTER TABLE commands that matter only to the users of a live table: the rule, its severity, and what
    /// breaks (given the table's and the column's or constraint's name).
    static let compatibilityCommands: [String: (rule: String, severity: String, message: @Sendable (String, String) -> String)] = {
        var commands: [String: (rule: String, severity: String, message: @Sendable (String, String) -> String)] = [
            "AT_DropColumn": ("ban-drop-column", "warning", { "DROP COLUMN \($1) of \($0): code that still reads or writes it breaks (both services share this database); deploy code that no longer uses it first" }),
            "AT_DropNotNull": ("ban-drop-not-null", "warning", { "DROP NOT NULL on \($0).\($1): readers that assume a value meet NULLs" }),
            "AT_DropConstraint": ("ban-drop-constraint", "warning", { "DROP CONSTRAINT \($1) on \($0): rows it kept out can now be written, and code that relied on it meets them" }),
            "AT_DropExpression": ("ban-drop-generated-expression", "warning", { "DROP EXPRESSION on \($0).\($1): the column stops following its expression" }),
            "AT_ReplicaIdentity": ("ban-replica-identity", "info", { table, _ in "REPLICA IDENTITY on \(table) changes what logical replication sends" }),
            "AT_DropInherit": ("ban-detach-inheritance", "info", { table, _ in "NO INHERIT: queries on the parent stop seeing \(table)'s rows" }),
        ]
        for identity in ["AT_AddIdentity", "AT_SetIdentity", "AT_DropIdentity"] {
            commands[identity] = ("ban-alter-identity", "warning", { "changing \($0).\($1)'s identity changes the ids later inserts get" })
        }
        for trigger in ["AT_DisableTrig", "AT_DisableTrigAll", "AT_DisableTrigUser"] {
            commands[trigger] = ("ban-disable-trigger", "info", { table, _ in "DISABLE TRIGGER on \(table): what the trigger kept true stops being kept" })
        }
        for security in ["AT_EnableRowSecurity", "AT_DisableRowSecurity", "AT_ForceRowSecurity", "AT_NoForceRowSecurity"] {
            commands[security] = ("ban-alter-row-level-security", "info", { table, _ in "row level security on \(table) changes which rows every role sees" })
        }
        return commands
    }()

    /// A type change PostgreSQL makes in the catalog only: varchar widened or unbounded, varchar to text.
    static func catalogOnly(from current: (name: String, modifier: Int), to new: ParseTree) -> Bool {
        guard current.name == "varchar" else { return false }
        let name = new["names"]?.names.last ?? ""
        let length = new["typmods"]?.array.first?.node("A_Const")?["ival"]?["ival"]?.int
        switch name {
        case "text": return true
        case "varchar": return length == nil || current.modifier < 0 || length! >= current.modifier - 4
        default: return false
        }
    }

    /// Column-type style rules (info): the same on new and live tables.
    static func style(_ column: ParseTree, name written: String? = nil) -> [Plan.Finding] {
        let names = column["typeName"]?["names"]?.names ?? []
        let type = names.last ?? ""
        let name = written ?? column["colname"]?.string ?? ""
        var out: [Plan.Finding] = []
        switch type {
        case "int4", "int", "integer", "serial", "serial4":
            out.append(finding("prefer-bigint-over-int", "info", "\(name) is a 32-bit integer: it runs out at 2,147,483,647; use bigint"))
        case "int2", "smallint", "smallserial", "serial2":
            out.append(finding("prefer-bigint-over-smallint", "info", "\(name) is a 16-bit integer: it runs out at 32,767; use bigint"))
        case "varchar" where column["typeName"]?["typmods"] != nil:
            out.append(finding("prefer-text-field", "info", "\(name) is varchar(n): use text with a CHECK on its length, which can change without a rewrite"))
        case "bpchar", "char", "character":
            out.append(finding("ban-char-field", "info", "\(name) is char(n), padded with spaces: use text (with a CHECK on its length)"))
        case "timestamp":
            out.append(finding("prefer-timestamp-tz", "info", "\(name) is timestamp without time zone: use timestamptz, which stores an instant"))
        default: break
        }
        if ["serial", "serial4", "serial8", "bigserial", "smallserial", "serial2"].contains(type) {
            out.append(finding("prefer-identity", "info", "\(name) is \(type): use GENERATED BY DEFAULT AS IDENTITY, which keeps the sequence with the column"))
        }
        return out
    }

    private static func createIndex(_ statement: SQLStatement, _ f: ParseTree, scope: LintScope) async throws -> [Plan.Finding] {
        guard let relation = f["relation"] else { return [] }
        let table = qualified(relation)
        var findings: [Plan.Finding] = []
        if relation["schemaname"] == nil {
            findings.append(finding("require-table-schema", "info", "CREATE INDEX on \(table.name) names no schema for the table"))
        }
        if f["concurrent"]?.isTrue == true {
            if scope.statementCount > 1 {
                findings.append(finding("ban-concurrent-index-creation-in-transaction", "warning",
                                        "CREATE INDEX CONCURRENTLY cannot run in a transaction, so Tally runs this file statement by statement (drizzle-kit's migrator, which wraps every file in one, fails on it): if a later statement fails, the earlier ones stay applied. Give the CONCURRENTLY statement a migration of its own"))
            }
            if f["if_not_exists"]?.isTrue != true {
                findings.append(finding("prefer-robust-stmts", "warning",
                                        "a CONCURRENTLY build that fails leaves an INVALID index behind, and a rerun stops on its name: write CREATE INDEX CONCURRENTLY IF NOT EXISTS (and drop an INVALID one first)"))
            }
        } else if let facts = try await filled(table, scope) {
            let unique = f["unique"]?.isTrue == true ? "CREATE UNIQUE INDEX" : "CREATE INDEX"
            findings.append(lockFinding("require-concurrent-index-creation", "\(unique) without CONCURRENTLY reads the whole table to build", table, facts, mode: "SHARE",
                                        fix: "Use \(unique) CONCURRENTLY (Tally then runs the migration outside a transaction)"))
        }
        return findings
    }

    private static func drop(_ f: ParseTree, scope: LintScope) async throws -> [Plan.Finding] {
        let kind = f["removeType"]?.string ?? ""
        let missingOK = f["missing_ok"]?.isTrue == true
        var findings: [Plan.Finding] = []
        for object in f["objects"]?.array ?? [] {
            let parts = object.node("List")?["items"]?.names ?? object.node("TypeName")?["names"]?.names
                ?? object.node("ObjectWithArgs")?["objname"]?.names ?? [object.node("String")?["sval"]?.string].compactMap { $0 }
            let written = parts.map(quoteIdentifier).joined(separator: ".")
            let display = parts.joined(separator: ".")
            switch kind {
            case "OBJECT_TABLE":
                let table = parts.count > 1 ? QualifiedName(schema: parts[parts.count - 2], name: parts.last!) : QualifiedName(name: parts.last ?? "")
                if let facts = try await live(table, scope) {
                    findings.append(finding("ban-drop-table", "warning", "DROP TABLE \(describe(table, facts)): its data is gone and code that uses it breaks; take a backup (tally db backup) and deploy code that no longer uses it first", table: table, rows: facts))
                }
            case "OBJECT_INDEX":
                guard let table = try await scope.facts.tableOfIndex(written) else { break }
                findings.append(finding("ban-drop-index", "info", "DROP INDEX \(display): queries that used it fall back to scans of \(table.name)", table: table))
                if f["concurrent"]?.isTrue == true {
                    if !missingOK {
                        findings.append(finding("prefer-robust-stmts", "warning", "DROP INDEX CONCURRENTLY runs outside a transaction: write IF EXISTS so a rerun after a failure goes on"))
                    }
                } else if let facts = try await filled(table, scope) {
                    findings.append(lockFinding("require-concurrent-index-deletion", "DROP INDEX \(display) without CONCURRENTLY", table, facts, mode: "ACCESS EXCLUSIVE",
                                                fix: "Use DROP INDEX CONCURRENTLY (in a migration of its own)"))
                }
            case "OBJECT_VIEW", "OBJECT_MATVIEW":
                if try await scope.facts.exists("SELECT 1 WHERE to_regclass(\(written)) IS NOT NULL") {
                    findings.append(finding("ban-drop-view", "warning", "DROP VIEW \(display): code that reads it breaks"))
                }
            case "OBJECT_SEQUENCE":
                if try await scope.facts.exists("SELECT 1 WHERE to_regclass(\(written)) IS NOT NULL") {
                    findings.append(finding("ban-drop-sequence", "warning", "DROP SEQUENCE \(display): defaults and code that call nextval on it break"))
                }
            case "OBJECT_TYPE", "OBJECT_DOMAIN":
                if try await scope.facts.exists("SELECT 1 WHERE to_regtype(\(written)) IS NOT NULL") {
                    let rule = kind == "OBJECT_TYPE" ? "ban-drop-type" : "ban-drop-domain"
                    findings.append(finding(rule, "warning", "DROP \(kind == "OBJECT_TYPE" ? "TYPE" : "DOMAIN") \(display): code that casts to it or declares it breaks"))
                }
            case "OBJECT_FUNCTION", "OBJECT_PROCEDURE":
                if try await scope.facts.exists("SELECT 1 FROM pg_proc WHERE proname = \(parts.last ?? "")") {
                    findings.append(finding("ban-drop-function", "warning", "DROP FUNCTION \(display): callers, defaults and triggers that use it break"))
                }
            case "OBJECT_SCHEMA":
                if try await scope.facts.exists("SELECT 1 FROM pg_namespace WHERE nspname = \(display)") {
                    findings.append(finding("ban-drop-schema", "warning", "DROP SCHEMA \(display): everything code reads in it is gone"))
                }
            case "OBJECT_EXTENSION":
                if try await scope.facts.exists("SELECT 1 FROM pg_extension WHERE extname = \(display)") {
                    findings.append(finding("ban-drop-extension", "warning", "DROP EXTENSION \(display): its functions and types go, with every column and default that uses them"))
                }
            case "OBJECT_TRIGGER":
                if try await scope.facts.exists("SELECT 1 FROM pg_trigger WHERE tgname = \(parts.last ?? "") AND NOT tgisinternal") {
                    findings.append(finding("ban-drop-trigger", "info", "DROP TRIGGER \(parts.last ?? ""): what it kept true stops being kept"))
                }
            case "OBJECT_POLICY":
                if try await scope.facts.exists("SELECT 1 FROM pg_policy WHERE polname = \(parts.last ?? "")") {
                    findings.append(finding("ban-drop-policy", "info", "DROP POLICY \(parts.last ?? ""): the rows it let its roles see or write change"))
                }
            default: break
            }
        }
        return findings
    }

    private static func rename(_ f: ParseTree, scope: LintScope) async throws -> [Plan.Finding] {
        let kind = f["renameType"]?.string ?? ""
        let newName = f["newname"]?.string ?? ""
        if let relation = f["relation"] {
            let table = qualified(relation)
            guard try await scope.facts.exists("SELECT 1 WHERE to_regclass(\(table.sql)) IS NOT NULL"), !scope.newTables.contains(table) else { return [] }
            switch kind {
            case "OBJECT_COLUMN":
                return [finding("renaming-column", "warning", "RENAME COLUMN \(f["subname"]?.string ?? "") TO \(newName) on \(table.name): code that uses the old name breaks the moment this commits; add the new column, write both, then drop the old", table: table)]
            case "OBJECT_TABLE":
                return [finding("renaming-table", "warning", "RENAME \(table.name) TO \(newName): code that uses the old name breaks the moment this commits; a view with the old name can bridge the deploy", table: table)]
            default:
                return [finding("renaming-object", "warning", "RENAME \(table.name)\(f["subname"]?.string.map { ".\($0)" } ?? "") TO \(newName): code and scripts that name it break", table: table)]
            }
        }
        return [finding("renaming-object", "warning", "RENAME … TO \(newName): code and scripts that use the old name break")]
    }

    private static func objectIsLive(_ f: ParseTree, scope: LintScope) async throws -> Bool {
        guard let relation = f["relation"] else { return true }
        let table = qualified(relation)
        guard !scope.newTables.contains(table) else { return false }
        return try await scope.facts.exists("SELECT 1 WHERE to_regclass(\(table.sql)) IS NOT NULL")
    }

    private static func transaction(_ f: ParseTree, _ statement: SQLStatement, scope: inout LintScope) -> [Plan.Finding] {
        switch f["kind"]?.string ?? "" {
        case "TRANS_STMT_BEGIN", "TRANS_STMT_START":
            scope.openTransactions += 1
            var out: [Plan.Finding] = []
            if scope.transactional {
                out.append(finding("transaction-nesting", "error", "BEGIN inside the transaction Tally runs the migration in: PostgreSQL ignores it with a warning, and a COMMIT after it would end Tally's transaction early. Remove the file's BEGIN and COMMIT"))
            }
            return out
        case "TRANS_STMT_COMMIT", "TRANS_STMT_ROLLBACK":
            scope.openTransactions = max(0, scope.openTransactions - 1)
            return scope.transactional
                ? [finding("transaction-nesting", "error", "\(f["kind"]?.string == "TRANS_STMT_COMMIT" ? "COMMIT" : "ROLLBACK") inside the transaction Tally runs the migration in ends it early: the rest of the file and Tally's history row run outside it. Remove it")]
                : []
        default: return []
        }
    }

    private static func reindex(_ f: ParseTree, scope: LintScope) async throws -> [Plan.Finding] {
        let kind = f["kind"]?.string ?? ""
        let fix = "Use REINDEX … CONCURRENTLY (in a migration of its own)"
        if kind == "REINDEX_OBJECT_TABLE", let relation = f["relation"] {
            let table = qualified(relation)
            guard let facts = try await filled(table, scope) else { return [] }
            return [lockFinding("require-concurrent-reindex", "REINDEX TABLE rebuilds every index", table, facts, mode: "SHARE", fix: fix)]
        }
        if kind == "REINDEX_OBJECT_INDEX", let relation = f["relation"] {
            let index = qualified(relation)
            guard let table = try await scope.facts.tableOfIndex(index.sql), let facts = try await filled(table, scope) else { return [] }
            return [lockFinding("require-concurrent-reindex", "REINDEX INDEX \(index.name) rebuilds it; queries that would use it wait too", table, facts, mode: "SHARE", fix: fix)]
        }
        return [finding("require-concurrent-reindex", "warning", "REINDEX of a whole schema or database without CONCURRENTLY blocks writes to each table in turn. \(fix)")]
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
}
