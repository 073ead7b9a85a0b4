import Foundation
import TallyPostgres

/// ALTER TABLE, command by command: the lock rules, compatibility rules and style of the columns it adds.
extension Lint {
    static func alterTable(_ statement: SQLStatement, _ f: ParseTree, scope: inout LintScope) async throws -> [Plan.Finding] {
        guard let relation = f["relation"] else { return [] }
        let table = qualified(relation)
        var findings: [Plan.Finding] = []
        let objtype = f["objtype"]?.string ?? "OBJECT_TABLE"
        let commands = f["cmds"]?.array.compactMap { $0.node("AlterTableCmd") } ?? []
        if objtype == "OBJECT_TYPE" {
            if commands.contains(where: { $0["subtype"]?.string == "AT_AddColumn" }) {
                findings.append(finding(.banAddCompositeAttribute, .info, "ADD ATTRIBUTE to a composite type: code that builds or reads its values by position breaks"))
            }
            return findings
        }
        if objtype == "OBJECT_VIEW" || objtype == "OBJECT_MATVIEW" {
            if commands.contains(where: { ["AT_SetRelOptions", "AT_ResetRelOptions"].contains($0["subtype"]?.string ?? "") }) {
                findings.append(finding(.banAlterViewOptions, .info, "ALTER VIEW … SET options changes how queries through it run (security_barrier, check_option)"))
            }
            return findings
        }
        if objtype == "OBJECT_TABLE", relation["schemaname"] == nil {
            findings.append(finding(.requireTableSchema, .info, "ALTER TABLE \(table.name) names no schema: it acts on the first match in the search_path"))
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
                    findings.append(finding(.banAddColumn, .info, "ADD COLUMN \(def["colname"]?.string ?? ""): consumers that read whole rows into fixed shapes see a new field", table: table))
                    if kinds.contains("CONSTR_NOTNULL") {
                        findings.append(finding(.banNewWriteRestriction, .info, "a new NOT NULL column: inserts that leave it out fail unless it has a DEFAULT", table: table))
                    }
                }
                guard let facts = filled else { break }
                if kinds.contains("CONSTR_NOTNULL"), !kinds.contains("CONSTR_DEFAULT"), !kinds.contains("CONSTR_IDENTITY"), !kinds.contains("CONSTR_GENERATED") {
                    findings.append(finding(.addingRequiredField, facts.unknown ? .warning : .error,
                                            "a NOT NULL column without a DEFAULT fails on \(describe(table, facts)) if it has rows; give it a DEFAULT or add it nullable and backfill", table: table, rows: facts))
                }
                let name = def["colname"]?.string ?? ""
                if kinds.contains("CONSTR_GENERATED") {
                    findings.append(lockFinding(.addingFieldWithDefault, "ADD COLUMN \(name) … GENERATED ALWAYS AS … STORED computes every row: a rewrite", table, facts, mode: .accessExclusive,
                                                fix: "Add a plain column, backfill it in batches, and keep it current with a trigger"))
                } else if let defaultValue = constraints.first(where: { $0["contype"]?.string == "CONSTR_DEFAULT" })?["raw_expr"] {
                    var volatile: [String] = []
                    for call in defaultValue.all("FuncCall") {
                        if let function = call["funcname"]?.names.last, try await scope.facts.isVolatile(function: function) { volatile.append(function) }
                    }
                    if !volatile.isEmpty {
                        findings.append(lockFinding(.addingFieldWithDefault, "ADD COLUMN \(name) with a DEFAULT that calls \(volatile.joined(separator: ", "))() (volatile in this database) writes a value into every row: a rewrite", table, facts, mode: .accessExclusive,
                                                    fix: "Add the column without the default (or with a constant one), backfill in batches, then SET DEFAULT"))
                    }
                }
                if kinds.contains("CONSTR_PRIMARY") {
                    findings.append(lockFinding(.addingSerialPrimaryKeyField, "ADD COLUMN \(name) … PRIMARY KEY builds a unique index", table, facts, mode: .accessExclusive,
                                                fix: "Add the column, CREATE UNIQUE INDEX CONCURRENTLY, then ADD PRIMARY KEY USING INDEX"))
                }
                if kinds.contains("CONSTR_UNIQUE") {
                    findings.append(lockFinding(.disallowedUniqueConstraint, "ADD COLUMN \(name) … UNIQUE builds a unique index", table, facts, mode: .accessExclusive,
                                                fix: "Add the column, CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT … UNIQUE USING INDEX"))
                }
            case "AT_AddConstraint":
                guard let constraint = command["def"]?.node("Constraint") else { break }
                let kind = constraint["contype"]?.string ?? ""
                let notValid = constraint["skip_validation"]?.isTrue == true
                let name = constraint["conname"]?.string
                if live != nil, ["CONSTR_CHECK", "CONSTR_UNIQUE", "CONSTR_FOREIGN", "CONSTR_PRIMARY", "CONSTR_EXCLUSION"].contains(kind) {
                    findings.append(finding(.banNewWriteRestriction, .info, "a new constraint on a live table: writes that passed before can fail now", table: table))
                }
                if notValid, let name { scope.addedNotValid.insert("\(table)/\(name)") }
                switch kind {
                case "CONSTR_FOREIGN":
                    guard !notValid, let facts = filled else { break }
                    let referenced = constraint["pktable"].map(qualified)?.description ?? "the referenced table"
                    if scope.onlineRewrite {
                        findings.append(finding(.addingForeignKeyConstraint, .info,
                                                "foreign key without NOT VALID on \(describe(table, facts)): Tally adds it NOT VALID and validates it in a separate transaction, so writes wait only a moment (--strict-sql would run it as written and block writes to \(table.name) and \(referenced) for a full scan)", table: table, rows: facts))
                        findings.append(finding(.constraintMissingNotValid, .info, "Tally adds this foreign key NOT VALID and validates it afterwards (see adding-foreign-key-constraint)", table: table, rows: facts))
                    } else {
                        findings.append(lockFinding(.addingForeignKeyConstraint, "a foreign key without NOT VALID scans the whole table; writes to \(referenced) wait too", table, facts, mode: .shareRowExclusive,
                                                    fix: "Add it NOT VALID, then VALIDATE CONSTRAINT in another transaction"))
                        findings.append(lockFinding(.constraintMissingNotValid, "a constraint without NOT VALID checks every row", table, facts, mode: .shareRowExclusive,
                                                    fix: "Add it NOT VALID, then VALIDATE CONSTRAINT in another transaction"))
                    }
                case "CONSTR_CHECK":
                    guard !notValid, let facts = filled else { break }
                    findings.append(lockFinding(.constraintMissingNotValid, "a CHECK without NOT VALID checks every row", table, facts, mode: .accessExclusive,
                                                fix: "Add it NOT VALID, then VALIDATE CONSTRAINT in another transaction (only SHARE UPDATE EXCLUSIVE)"))
                case "CONSTR_PRIMARY" where constraint["indexname"] == nil:
                    guard let facts = filled else { break }
                    findings.append(lockFinding(.addingSerialPrimaryKeyField, "ADD PRIMARY KEY builds a unique index", table, facts, mode: .accessExclusive,
                                                fix: "CREATE UNIQUE INDEX CONCURRENTLY first, then ADD PRIMARY KEY USING INDEX"))
                case "CONSTR_UNIQUE" where constraint["indexname"] == nil:
                    guard let facts = filled else { break }
                    findings.append(lockFinding(.disallowedUniqueConstraint, "ADD UNIQUE builds a unique index", table, facts, mode: .accessExclusive,
                                                fix: "CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT … UNIQUE USING INDEX"))
                default: break
                }
            case "AT_ValidateConstraint":
                if scope.transactional, let name = column, scope.addedNotValid.contains("\(table)/\(name)"), let facts = filled {
                    findings.append(lockFinding(.constraintMissingNotValid, "VALIDATE CONSTRAINT \(name) in the transaction that added it NOT VALID keeps the add's lock through the scan", table, facts, mode: .accessExclusive,
                                                fix: "Validate it in a later migration"))
                }
            case "AT_SetNotNull":
                if live != nil {
                    findings.append(finding(.banNewWriteRestriction, .info, "SET NOT NULL: inserts and updates that write NULL fail now", table: table))
                }
                guard let facts = filled, let column else { break }
                if try await scope.facts.hasValidatedNotNullCheck(table, column) { break }
                findings.append(lockFinding(.addingNotNullableField, "SET NOT NULL on \(column) checks every row", table, facts, mode: .accessExclusive,
                                            fix: "Add CHECK (\(column) IS NOT NULL) NOT VALID, VALIDATE it in another migration, then SET NOT NULL (no scan since PostgreSQL 12)"))
            case "AT_AlterColumnType":
                let def = command["def"]?.node("ColumnDef")
                if let def { findings += style(def, name: column) }
                guard let facts = filled, let column else { break }
                if def?["raw_default"] == nil, let current = try await scope.facts.columnType(table, column), let new = def?["typeName"],
                    catalogOnly(from: current, to: new)
                {
                    findings.append(finding(.changingColumnType, .info,
                                            "\(column) is \(current.name)\(current.modifier > 4 ? "(\(current.modifier - 4))" : "") in the live table: this change is catalog-only (no rewrite, no scan); ACCESS EXCLUSIVE on \(describe(table, facts)) is held only a moment", table: table, rows: facts))
                } else {
                    findings.append(lockFinding(.changingColumnType, "ALTER COLUMN \(column) TYPE rewrites the table and its indexes", table, facts, mode: .accessExclusive,
                                                fix: "Add a column of the new type, backfill it in batches, switch the code, then drop the old one"))
                }
            case "AT_ColumnDefault":
                guard live != nil else { break }
                if command["def"] == nil {
                    findings.append(finding(.banDropDefault, .warning, "DROP DEFAULT on \(table.name).\(column ?? ""): inserts that leave the column out now write NULL or fail", table: table))
                } else {
                    findings.append(finding(.banSetDefault, .info, "SET DEFAULT on \(table.name).\(column ?? ""): inserts that leave the column out get a different value", table: table))
                }
            case "AT_DetachPartition":
                let concurrent = command["def"]?.node("PartitionCmd")?["concurrent"]?.isTrue == true
                if !concurrent, let facts = filled {
                    findings.append(lockFinding(.requireConcurrentPartitionDetach, "DETACH PARTITION without CONCURRENTLY", table, facts, mode: .accessExclusive,
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
    typealias CompatibilityCommand = (rule: LintRule.Name, severity: Plan.Severity, message: @Sendable (String, String) -> String)

    static let compatibilityCommands: [String: CompatibilityCommand] = {
        var commands: [String: CompatibilityCommand] = [
            "AT_DropColumn": (.banDropColumn, .warning, { "DROP COLUMN \($1) of \($0): code that still reads or writes it breaks (both services share this database); deploy code that no longer uses it first" }),
            "AT_DropNotNull": (.banDropNotNull, .warning, { "DROP NOT NULL on \($0).\($1): readers that assume a value meet NULLs" }),
            "AT_DropConstraint": (.banDropConstraint, .warning, { "DROP CONSTRAINT \($1) on \($0): rows it kept out can now be written, and code that relied on it meets them" }),
            "AT_DropExpression": (.banDropGeneratedExpression, .warning, { "DROP EXPRESSION on \($0).\($1): the column stops following its expression" }),
            "AT_ReplicaIdentity": (.banReplicaIdentity, .info, { table, _ in "REPLICA IDENTITY on \(table) changes what logical replication sends" }),
            "AT_DropInherit": (.banDetachInheritance, .info, { table, _ in "NO INHERIT: queries on the parent stop seeing \(table)'s rows" }),
        ]
        for identity in ["AT_AddIdentity", "AT_SetIdentity", "AT_DropIdentity"] {
            commands[identity] = (.banAlterIdentity, .warning, { "changing \($0).\($1)'s identity changes the ids later inserts get" })
        }
        for trigger in ["AT_DisableTrig", "AT_DisableTrigAll", "AT_DisableTrigUser"] {
            commands[trigger] = (.banDisableTrigger, .info, { table, _ in "DISABLE TRIGGER on \(table): what the trigger kept true stops being kept" })
        }
        for security in ["AT_EnableRowSecurity", "AT_DisableRowSecurity", "AT_ForceRowSecurity", "AT_NoForceRowSecurity"] {
            commands[security] = (.banAlterRowLevelSecurity, .info, { table, _ in "row level security on \(table) changes which rows every role sees" })
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
}
