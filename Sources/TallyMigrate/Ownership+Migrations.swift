import Foundation
import PostgresNIO
import TallyPostgres

/// The ownership manifest applied to an app's migrations: `plan` and `up` refuse DDL on a table another app
/// owns, and `plan` warns when a change to an owned table would break another app that reads or writes it.
public struct OwnershipCheck: Sendable {
    public var manifest: OwnershipManifest
    /// The app whose migrations these are.
    public var app: String
    /// Run DDL on other apps' tables anyway (recorded in `tally_migrate.overrides`).
    public var allowForeignDDL: Bool

    public init(manifest: OwnershipManifest, app: String, allowForeignDDL: Bool = false) throws {
        _ = try manifest.app(app)
        self.manifest = manifest
        self.app = app
        self.allowForeignDDL = allowForeignDDL
    }

    /// The tables whose definition `statement` changes (not those it only references, as a foreign key's target).
    static func changedTables(_ statement: SQLStatement, tree: ParseTree) -> [QualifiedName] {
        switch statement.node {
        case .createStmt, .createTableAs: return statement.createdTable.map { [$0] } ?? []
        case .alterTable(let alter): return [alter.relation.qualifiedName]
        case .index(let index): return [index.relation.qualifiedName]
        case .drop(let drop) where drop.removeType == "OBJECT_TABLE":
            let names = tree.fields?["objects"]?.array.map { $0.node("List")?["items"]?.names ?? [] } ?? []
            return names.compactMap { parts in
                guard let last = parts.last else { return nil }
                return parts.count > 1 ? QualifiedName(schema: parts[parts.count - 2], name: last) : QualifiedName(name: last)
            }
        default:
            if let rename = tree.node("RenameStmt"), let relation = rename["relation"] { return [Lint.qualified(relation)] }
            return []
        }
    }

    /// Findings for one statement (a part of a DO block counts as its own).
    func findings(_ statement: SQLStatement, tree: ParseTree) -> [Plan.Finding] {
        var out: [Plan.Finding] = []
        for table in Self.changedTables(statement, tree: tree) {
            guard let owner = manifest.owner(of: table) else { continue }
            if owner.name != app {
                let use = manifest.users(of: table).first { $0.app.name == app }.map { $0.writes ? "may only write it" : "may only read it" } ?? "does not use it"
                out.append(.init(
                    rule: .foreignDDL, severity: allowForeignDDL ? .warning : .error,
                    message: "changes \(table), which \(owner.name) owns (\(manifest.path)); \(app) \(use). Change it in \(owner.name)'s migrations\(allowForeignDDL ? "; run anyway with --allow-foreign-ddl (recorded in tally_migrate.overrides)" : ", or pass --allow-foreign-ddl to run it anyway (recorded)")",
                    table: table.description))
                continue
            }
            out += breakage(statement, table: table)
            if let rename = tree.node("RenameStmt"), rename["renameType"]?.string == "OBJECT_COLUMN" {
                let column = rename["subname"]?.string ?? "?"
                for other in manifest.users(of: table) where other.app.name != app {
                    out.append(.init(rule: .breaksOtherApp, severity: .warning,
                                     message: "renames \(table).\(column), and \(other.app.name) \(other.writes ? "writes" : "reads") \(table) (\(manifest.path)): it breaks if it maps the column (tally db drift --owners checks)", table: table.description))
                }
            }
        }
        return out
    }

    /// What a change to `table` (owned by this app) does to the other apps that use it.
    func breakage(_ statement: SQLStatement, table: QualifiedName) -> [Plan.Finding] {
        guard case .alterTable(let alter) = statement.node else {
            if case .drop = statement.node {
                return manifest.users(of: table).filter { $0.app.name != app }.map {
                    .init(rule: .breaksOtherApp, severity: .warning,
                          message: "drops \(table), which \($0.app.name) \($0.writes ? "writes" : "reads") (\(manifest.path)): it fails from then on", table: table.description)
                }
            }
            return []
        }
        var out: [Plan.Finding] = []
        let others = manifest.users(of: table).filter { $0.app.name != app }
        for command in alter.commands {
            switch command.subtype {
            case "AT_DropColumn":
                for other in others {
                    out.append(.init(rule: .breaksOtherApp, severity: .warning,
                                     message: "drops \(table).\(command.name ?? "?"), and \(other.app.name) \(other.writes ? "writes" : "reads") \(table) (\(manifest.path)): it breaks if it maps the column (tally db drift --owners checks)", table: table.description))
                }
            case "AT_AddColumn":
                guard case .columnDef(let column)? = command.def else { continue }
                let constraints = column.constraintList.map(\.contype)
                let required = constraints.contains("CONSTR_NOTNULL") && !constraints.contains("CONSTR_DEFAULT")
                    && !constraints.contains("CONSTR_IDENTITY") && !constraints.contains("CONSTR_GENERATED")
                for other in others where other.writes && required {
                    out.append(.init(rule: .breaksOtherApp, severity: .warning,
                                     message: "adds \(table).\(column.colname ?? "?") NOT NULL without a default, and \(other.app.name) writes \(table) (\(manifest.path)): its inserts fail until it sets the column; give it a default", table: table.description))
                }
            default: break
            }
        }
        return out
    }

    /// Every foreign-DDL finding of `migrations`, for `up` to refuse or record before it applies anything.
    func violations(_ migrations: [Migration]) -> [(tag: String, finding: Plan.Finding)] {
        migrations.flatMap { migration in
            migration.statements.flatMap(\.flattened).flatMap { part in
                findings(part, tree: part.tree).filter { $0.rule == .foreignDDL }.map { (migration.tag, $0) }
            }
        }
    }
}

extension MigrationBookkeeping {
    static func recordOverride(tag: String, hash: String, app: String, tables: [String], history: HistoryTable, on connection: DatabaseConnection) async throws {
        try await createSerialised(on: connection, """
            CREATE SCHEMA IF NOT EXISTS tally_migrate;
            CREATE TABLE IF NOT EXISTS tally_migrate.overrides (
                history_table text NOT NULL, tag text NOT NULL, hash text NOT NULL, app text NOT NULL, tables text[] NOT NULL,
                allowed_at timestamptz NOT NULL DEFAULT now(), allowed_by text NOT NULL DEFAULT current_user)
            """)
        try await connection.execute(
            """
            INSERT INTO tally_migrate.overrides (history_table, tag, hash, app, tables)
            VALUES (\(history.description), \(tag), \(hash), \(app), \(tables))
            """)
    }
}
