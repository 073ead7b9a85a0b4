import Foundation
import PostgresNIO
import TallyPostgres

/// Lock modes and lint rules (squawk's names, `LintRules`) for single statements, read from their parse trees
/// and judged against the live database.
enum Lint {
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

    static func finding(_ rule: LintRule.Name, _ severity: Plan.Severity, _ message: String, table: QualifiedName? = nil, rows: LiveFacts.Table? = nil) -> Plan.Finding {
        Plan.Finding(rule: rule, severity: severity, message: message, table: table?.description, rows: rows?.unknown == true ? nil : rows?.rows)
    }

    /// A lock held for a scan, rewrite or build on a filled table: what, on which table, with how many rows, what waits, the fix.
    static func lockFinding(_ rule: LintRule.Name, _ what: String, _ table: QualifiedName, _ facts: LiveFacts.Table, mode: LockMode, fix: String, severity: Plan.Severity = .warning) -> Plan.Finding {
        finding(rule, severity, "\(what). \(describe(table, facts)) stays locked \(mode) until it is done: \(mode.blocks). \(fix)", table: table, rows: facts)
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
                findings.append(finding(.requireTableSchema, .info, "CREATE TABLE \(name) names no schema: it lands in the first schema of the search_path"))
            }
        case "IndexStmt":
            findings += try await createIndex(statement, f, scope: scope)
        case "DropStmt":
            findings += try await drop(f, scope: scope)
        case "DropdbStmt":
            findings.append(finding(.banDropDatabase, .error, "DROP DATABASE \(f["dbname"]?.string ?? "") in a migration: remove it; a database is dropped by hand, after a backup"))
        case "RenameStmt":
            findings += try await rename(f, scope: scope)
        case "AlterObjectSchemaStmt":
            if try await objectIsLive(f, scope: scope) {
                findings.append(finding(.banSetSchema, .warning, "SET SCHEMA moves a live object: code that names it by its old schema breaks; deploy code that uses the new name first"))
            }
        case "AlterDomainStmt" where f["subtype"]?.string == "C":
            let domain = f["typeName"]?.names.joined(separator: ".") ?? ""
            let using = try await scope.facts.tablesUsing(domain: domain)
            if !using.isEmpty {
                let rows = using.map { describe($0.0, $0.1) }.joined(separator: ", ")
                findings.append(Plan.Finding(
                    rule: .banAlterDomainWithAddConstraint, severity: .warning,
                    message: "ALTER DOMAIN \(domain) ADD CONSTRAINT checks every row of \(rows) under a lock: every write to them waits. Add it NOT VALID, then VALIDATE CONSTRAINT in another migration",
                    table: using.first?.0.description, rows: using.contains { $0.1.unknown } ? nil : using.reduce(0) { $0 + $1.1.rows }))
            }
        case "CreateDomainStmt":
            if f["constraints"]?.array.contains(where: { $0.node("Constraint")?["contype"]?.string == "CONSTR_CHECK" }) == true {
                findings.append(finding(.banCreateDomainWithConstraint, .info, "a domain with a CHECK: adding or changing its constraints later checks every table that uses it under lock; a CHECK on each column is easier to change"))
            }
        case "AlterEnumStmt":
            if f["oldVal"] == nil, let value = f["newVal"]?.string {
                if f["newValNeighbor"] == nil {
                    findings.append(finding(.requireEnumValueOrdering, .info, "ADD VALUE '\(value)' without BEFORE or AFTER puts it last in the enum's sort order; say where it belongs"))
                }
                findings.append(finding(.banAddEnumValue, .info, "ADD VALUE '\(value)': consumers that match the enum's values exhaustively meet a value they do not know"))
            }
        case "TruncateStmt" where f["behavior"]?.string == "DROP_CASCADE":
            var anyLive = false
            for relation in f["relations"]?.array.compactMap({ $0.node("RangeVar") }) ?? [] where try await live(qualified(relation), scope) != nil { anyLive = true }
            guard anyLive else { break }
            findings.append(finding(.banTruncateCascade, .warning, "TRUNCATE … CASCADE also empties every table with a foreign key to these, recursively; name each table to truncate instead"))
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
                        findings.append(lockFinding(.preferRepack, "VACUUM FULL rewrites the table", table, facts, mode: .accessExclusive,
                                                    fix: "Use pg_repack (or, from PostgreSQL 19, REPACK CONCURRENTLY) to rewrite it online"))
                    }
                }
            }
        case "ClusterStmt":
            if let relation = f["relation"] {
                let table = qualified(relation)
                if let facts = try await filled(table, scope) {
                    findings.append(lockFinding(.preferRepack, "CLUSTER rewrites the table", table, facts, mode: .accessExclusive,
                                                fix: "Use pg_repack (or, from PostgreSQL 19, REPACK CONCURRENTLY) to rewrite it online"))
                }
            }
        case "UpdateStmt":
            let names = f["targetList"]?.array.compactMap { $0.node("ResTarget")?["name"]?.string } ?? []
            let repeated = Set(names.filter { name in names.filter { $0 == name }.count > 1 })
            if !repeated.isEmpty {
                findings.append(finding(.banDuplicateColumnAssignments, .error, "UPDATE sets \(repeated.sorted().joined(separator: ", ")) more than once: PostgreSQL refuses it (multiple assignments to same column)"))
            }
        case "GrantStmt" where f["is_grant"]?.isTrue != true:
            findings.append(finding(.banRevoke, .info, "REVOKE: a service that relied on the privilege fails on its next query"))
        case "ViewStmt" where f["replace"]?.isTrue == true:
            if let view = f["view"], try await scope.facts.exists("SELECT 1 WHERE to_regclass(\(qualified(view).sql)) IS NOT NULL") {
                findings.append(finding(.banReplaceViewFunction, .info, "CREATE OR REPLACE VIEW of a live view: readers see the new definition at once"))
            }
        case "CreateFunctionStmt" where f["replace"]?.isTrue == true:
            let name = f["funcname"]?.names.last ?? ""
            if try await scope.facts.exists("SELECT 1 FROM pg_proc WHERE proname = \(name)") {
                findings.append(finding(.banReplaceViewFunction, .info, "CREATE OR REPLACE FUNCTION \(name): callers get the new body at once"))
            }
        case "CreatePolicyStmt":
            findings.append(finding(.banCreatePolicy, .info, "CREATE POLICY: once row level security is on, rows outside the policy vanish for the roles it names"))
        case "AlterPolicyStmt":
            if f["qual"] != nil || f["with_check"] != nil {
                findings.append(finding(.banAlterPolicyCondition, .info, "ALTER POLICY changes which rows its roles see or may write"))
            }
            if f["roles"] != nil {
                findings.append(finding(.banAlterPolicyRoles, .info, "ALTER POLICY … TO changes which roles it applies to"))
            }
        case "AlterFunctionStmt":
            findings.append(finding(.banAlterFunctionOptions, .info, "ALTER FUNCTION options change how every caller's calls run"))
        case "AlterRoleStmt", "AlterRoleSetStmt":
            findings.append(finding(.banAlterRoleOptions, .info, "ALTER ROLE in a migration changes what a service's login may do"))
        case "AlterDatabaseStmt", "AlterDatabaseSetStmt":
            findings.append(finding(.banAlterDatabaseOptions, .info, "ALTER DATABASE changes settings for every session"))
        case "AlterSystemStmt":
            findings.append(finding(.banAlterSystemOptions, .info, "ALTER SYSTEM changes the server's configuration for every database"))
        case "AlterSeqStmt":
            findings.append(finding(.banAlterSequenceValues, .info, "ALTER SEQUENCE changes the values later inserts get"))
        case "AlterExtensionStmt", "AlterExtensionContentsStmt":
            findings.append(finding(.banAlterExtension, .info, "ALTER EXTENSION changes functions and types code relies on"))
        default: break
        }
        for name in truncatedIdentifiers(statement) {
            findings.append(finding(.identifierTooLong, .error,
                                    "an identifier starting \"\(name.prefix(20))…\" is longer than 63 bytes; PostgreSQL truncates it to \"\(name)\", so the object gets a different name than the one the code expects"))
        }
        return findings
    }

    static func qualified(_ relation: ParseTree) -> QualifiedName {
        QualifiedName(schema: relation["schemaname"]?.string ?? "public", name: relation["relname"]?.string ?? "")
    }

    /// Column-type style rules (info): the same on new and live tables.
    static func style(_ column: ParseTree, name written: String? = nil) -> [Plan.Finding] {
        let names = column["typeName"]?["names"]?.names ?? []
        let type = names.last ?? ""
        let name = written ?? column["colname"]?.string ?? ""
        var out: [Plan.Finding] = []
        switch type {
        case "int4", "int", "integer", "serial", "serial4":
            out.append(finding(.preferBigintOverInt, .info, "\(name) is a 32-bit integer: it runs out at 2,147,483,647; use bigint"))
        case "int2", "smallint", "smallserial", "serial2":
            out.append(finding(.preferBigintOverSmallint, .info, "\(name) is a 16-bit integer: it runs out at 32,767; use bigint"))
        case "varchar" where column["typeName"]?["typmods"] != nil:
            out.append(finding(.preferTextField, .info, "\(name) is varchar(n): use text with a CHECK on its length, which can change without a rewrite"))
        case "bpchar", "char", "character":
            out.append(finding(.banCharField, .info, "\(name) is char(n), padded with spaces: use text (with a CHECK on its length)"))
        case "timestamp":
            out.append(finding(.preferTimestampTz, .info, "\(name) is timestamp without time zone: use timestamptz, which stores an instant"))
        default: break
        }
        if ["serial", "serial4", "serial8", "bigserial", "smallserial", "serial2"].contains(type) {
            out.append(finding(.preferIdentity, .info, "\(name) is \(type): use GENERATED BY DEFAULT AS IDENTITY, which keeps the sequence with the column"))
        }
        return out
    }

    private static func createIndex(_ statement: SQLStatement, _ f: ParseTree, scope: LintScope) async throws -> [Plan.Finding] {
        guard let relation = f["relation"] else { return [] }
        let table = qualified(relation)
        var findings: [Plan.Finding] = []
        if relation["schemaname"] == nil {
            findings.append(finding(.requireTableSchema, .info, "CREATE INDEX on \(table.name) names no schema for the table"))
        }
        if f["concurrent"]?.isTrue == true {
            if scope.statementCount > 1 {
                findings.append(finding(.banConcurrentIndexCreationInTransaction, .warning,
                                        "CREATE INDEX CONCURRENTLY cannot run in a transaction, so Tally runs this file statement by statement (drizzle-kit's migrator, which wraps every file in one, fails on it): if a later statement fails, the earlier ones stay applied. Give the CONCURRENTLY statement a migration of its own"))
            }
            if f["if_not_exists"]?.isTrue != true {
                findings.append(finding(.preferRobustStmts, .warning,
                                        "a CONCURRENTLY build that fails leaves an INVALID index behind, and a rerun stops on its name: write CREATE INDEX CONCURRENTLY IF NOT EXISTS (and drop an INVALID one first)"))
            }
        } else if let facts = try await filled(table, scope) {
            let unique = f["unique"]?.isTrue == true ? "CREATE UNIQUE INDEX" : "CREATE INDEX"
            findings.append(lockFinding(.requireConcurrentIndexCreation, "\(unique) without CONCURRENTLY reads the whole table to build", table, facts, mode: .share,
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
                    findings.append(finding(.banDropTable, .warning, "DROP TABLE \(describe(table, facts)): its data is gone and code that uses it breaks; take a backup (tally db backup) and deploy code that no longer uses it first", table: table, rows: facts))
                }
            case "OBJECT_INDEX":
                guard let table = try await scope.facts.tableOfIndex(written) else { break }
                findings.append(finding(.banDropIndex, .info, "DROP INDEX \(display): queries that used it fall back to scans of \(table.name)", table: table))
                if f["concurrent"]?.isTrue == true {
                    if !missingOK {
                        findings.append(finding(.preferRobustStmts, .warning, "DROP INDEX CONCURRENTLY runs outside a transaction: write IF EXISTS so a rerun after a failure goes on"))
                    }
                } else if let facts = try await filled(table, scope) {
                    findings.append(lockFinding(.requireConcurrentIndexDeletion, "DROP INDEX \(display) without CONCURRENTLY", table, facts, mode: .accessExclusive,
                                                fix: "Use DROP INDEX CONCURRENTLY (in a migration of its own)"))
                }
            case "OBJECT_VIEW", "OBJECT_MATVIEW":
                if try await scope.facts.exists("SELECT 1 WHERE to_regclass(\(written)) IS NOT NULL") {
                    findings.append(finding(.banDropView, .warning, "DROP VIEW \(display): code that reads it breaks"))
                }
            case "OBJECT_SEQUENCE":
                if try await scope.facts.exists("SELECT 1 WHERE to_regclass(\(written)) IS NOT NULL") {
                    findings.append(finding(.banDropSequence, .warning, "DROP SEQUENCE \(display): defaults and code that call nextval on it break"))
                }
            case "OBJECT_TYPE", "OBJECT_DOMAIN":
                if try await scope.facts.exists("SELECT 1 WHERE to_regtype(\(written)) IS NOT NULL") {
                    let rule: LintRule.Name = kind == "OBJECT_TYPE" ? .banDropType : .banDropDomain
                    findings.append(finding(rule, .warning, "DROP \(kind == "OBJECT_TYPE" ? "TYPE" : "DOMAIN") \(display): code that casts to it or declares it breaks"))
                }
            case "OBJECT_FUNCTION", "OBJECT_PROCEDURE":
                if try await scope.facts.exists("SELECT 1 FROM pg_proc WHERE proname = \(parts.last ?? "")") {
                    findings.append(finding(.banDropFunction, .warning, "DROP FUNCTION \(display): callers, defaults and triggers that use it break"))
                }
            case "OBJECT_SCHEMA":
                if try await scope.facts.exists("SELECT 1 FROM pg_namespace WHERE nspname = \(display)") {
                    findings.append(finding(.banDropSchema, .warning, "DROP SCHEMA \(display): everything code reads in it is gone"))
                }
            case "OBJECT_EXTENSION":
                if try await scope.facts.exists("SELECT 1 FROM pg_extension WHERE extname = \(display)") {
                    findings.append(finding(.banDropExtension, .warning, "DROP EXTENSION \(display): its functions and types go, with every column and default that uses them"))
                }
            case "OBJECT_TRIGGER":
                if try await scope.facts.exists("SELECT 1 FROM pg_trigger WHERE tgname = \(parts.last ?? "") AND NOT tgisinternal") {
                    findings.append(finding(.banDropTrigger, .info, "DROP TRIGGER \(parts.last ?? ""): what it kept true stops being kept"))
                }
            case "OBJECT_POLICY":
                if try await scope.facts.exists("SELECT 1 FROM pg_policy WHERE polname = \(parts.last ?? "")") {
                    findings.append(finding(.banDropPolicy, .info, "DROP POLICY \(parts.last ?? ""): the rows it let its roles see or write change"))
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
                return [finding(.renamingColumn, .warning, "RENAME COLUMN \(f["subname"]?.string ?? "") TO \(newName) on \(table.name): code that uses the old name breaks the moment this commits; add the new column, write both, then drop the old", table: table)]
            case "OBJECT_TABLE":
                return [finding(.renamingTable, .warning, "RENAME \(table.name) TO \(newName): code that uses the old name breaks the moment this commits; a view with the old name can bridge the deploy", table: table)]
            default:
                return [finding(.renamingObject, .warning, "RENAME \(table.name)\(f["subname"]?.string.map { ".\($0)" } ?? "") TO \(newName): code and scripts that name it break", table: table)]
            }
        }
        return [finding(.renamingObject, .warning, "RENAME … TO \(newName): code and scripts that use the old name break")]
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
                out.append(finding(.transactionNesting, .error, "BEGIN inside the transaction Tally runs the migration in: PostgreSQL ignores it with a warning, and a COMMIT after it would end Tally's transaction early. Remove the file's BEGIN and COMMIT"))
            }
            return out
        case "TRANS_STMT_COMMIT", "TRANS_STMT_ROLLBACK":
            scope.openTransactions = max(0, scope.openTransactions - 1)
            return scope.transactional
                ? [finding(.transactionNesting, .error, "\(f["kind"]?.string == "TRANS_STMT_COMMIT" ? "COMMIT" : "ROLLBACK") inside the transaction Tally runs the migration in ends it early: the rest of the file and Tally's history row run outside it. Remove it")]
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
            return [lockFinding(.requireConcurrentReindex, "REINDEX TABLE rebuilds every index", table, facts, mode: .share, fix: fix)]
        }
        if kind == "REINDEX_OBJECT_INDEX", let relation = f["relation"] {
            let index = qualified(relation)
            guard let table = try await scope.facts.tableOfIndex(index.sql), let facts = try await filled(table, scope) else { return [] }
            return [lockFinding(.requireConcurrentReindex, "REINDEX INDEX \(index.name) rebuilds it; queries that would use it wait too", table, facts, mode: .share, fix: fix)]
        }
        return [finding(.requireConcurrentReindex, .warning, "REINDEX of a whole schema or database without CONCURRENTLY blocks writes to each table in turn. \(fix)")]
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
