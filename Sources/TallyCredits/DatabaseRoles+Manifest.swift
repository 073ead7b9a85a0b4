import Foundation
import PostgresNIO
import TallyMigrate
import TallyPostgres

/// One role per app of an ownership manifest, holding exactly what the manifest gives: the owner's role owns
/// its tables (and may create tables in their schemas), a writer's role has SELECT, INSERT, UPDATE, DELETE (and
/// the tables' sequences), a reader's SELECT; nothing else on the manifest's tables. Tables the manifest does
/// not name are left as they are.
extension DatabaseRoles {
    /// A table's rights as the manifest gives them to one app.
    public enum Access: Int, Sendable, Comparable {
        case none, reads, writes, owns
        public static func < (a: Access, b: Access) -> Bool { a.rawValue < b.rawValue }
        var privileges: [String] {
            switch self {
            case .none: []
            case .reads: ["SELECT"]
            case .writes: ["SELECT", "INSERT", "UPDATE", "DELETE"]
            case .owns: ["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"]
            }
        }
    }

    public static func access(of app: OwnershipManifest.App, to table: QualifiedName, in manifest: OwnershipManifest) -> Access {
        if manifest.owner(of: table)?.name == app.name { return .owns }
        if app.writes.contains(where: { $0.matches(table) }) { return .writes }
        if app.reads.contains(where: { $0.matches(table) }) { return .reads }
        return .none
    }

    /// The existing tables the manifest names (its schemas' tables that some pattern matches).
    static func manifestTables(_ manifest: OwnershipManifest, on connection: DatabaseConnection) async throws -> [QualifiedName] {
        let schemas = Array(Set(manifest.apps.flatMap { ($0.owns + $0.reads + $0.writes).map(\.schema) })).sorted()
        var tables: [QualifiedName] = []
        for try await (schema, name) in try await connection.query(
            "SELECT schemaname::text, tablename::text FROM pg_tables WHERE schemaname = ANY(\(schemas)) ORDER BY 1, 2"
        ).decode((String, String).self) {
            let table = QualifiedName(schema: schema, name: name)
            if manifest.apps.contains(where: { $0.uses(table) }) { tables.append(table) }
        }
        return tables
    }

    /// Gives each app's role what the manifest says (roles are made with `ensureLoginRole` first). Run as a
    /// superuser, or a role that owns the tables and may grant.
    public static func applyManifest(_ manifest: OwnershipManifest, on connection: DatabaseConnection) async throws {
        let database = quoteIdentifier(try await currentDatabase(connection))
        for app in manifest.apps { try await connection.run("GRANT CONNECT ON DATABASE \(database) TO \(quoteIdentifier(app.role))") }
        let tables = try await manifestTables(manifest, on: connection)
        for schema in Set(tables.map(\.schema)).sorted() {
            for app in manifest.apps where tables.contains(where: { $0.schema == schema && app.uses($0) }) {
                try await connection.run("GRANT USAGE ON SCHEMA \(quoteIdentifier(schema)) TO \(quoteIdentifier(app.role))")
            }
        }
        // An owner creates its new tables where it owns tables (migrations).
        for app in manifest.apps {
            for schema in Set(tables.filter { manifest.owner(of: $0)?.name == app.name }.map(\.schema)).sorted() {
                try await connection.run("GRANT USAGE, CREATE ON SCHEMA \(quoteIdentifier(schema)) TO \(quoteIdentifier(app.role))")
            }
        }
        for table in tables {
            if let owner = manifest.owner(of: table) {
                try await connection.run("ALTER TABLE \(table.sql) OWNER TO \(quoteIdentifier(owner.role))")
            }
            var sequences: [String] = []
            for try await name in try await connection.query(
                """
                SELECT s.oid::regclass::text FROM pg_class s JOIN pg_depend d ON d.objid = s.oid AND d.deptype IN ('a', 'i')
                WHERE s.relkind = 'S' AND d.refobjid = \(table.sql)::regclass
                """
            ).decode(String.self) { sequences.append(name) }
            for app in manifest.apps where manifest.owner(of: table)?.name != app.name {
                let role = quoteIdentifier(app.role)
                try await connection.run("REVOKE ALL ON \(table.sql) FROM \(role)")
                for sequence in sequences { try await connection.run("REVOKE ALL ON SEQUENCE \(sequence) FROM \(role)") }
                let access = access(of: app, to: table, in: manifest)
                if !access.privileges.isEmpty {
                    try await connection.run("GRANT \(access.privileges.joined(separator: ", ")) ON \(table.sql) TO \(role)")
                }
                if access == .writes {
                    for sequence in sequences { try await connection.run("GRANT USAGE, SELECT ON SEQUENCE \(sequence) TO \(role)") }
                }
            }
        }
    }

    /// Where the live grants differ from the manifest: one line per app role and table, what it has and what
    /// the manifest gives.
    public static func manifestDifferences(_ manifest: OwnershipManifest, on connection: DatabaseConnection) async throws -> [String] {
        var out: [String] = []
        let tables = try await manifestTables(manifest, on: connection)
        for app in manifest.apps {
            var exists = false
            for try await _ in try await connection.query("SELECT 1 FROM pg_roles WHERE rolname = \(app.role)") { exists = true }
            guard exists else {
                out.append("role \(app.role) of \(app.name) does not exist: run tally db roles --owners \(manifest.path)")
                continue
            }
            for table in tables {
                let expected = access(of: app, to: table, in: manifest)
                var owns = false
                var held: [String] = []
                for try await (isOwner, select, insert, update, delete, truncate) in try await connection.query(
                    """
                    SELECT pg_has_role(\(app.role), c.relowner, 'USAGE'),
                           has_table_privilege(\(app.role), c.oid, 'SELECT'), has_table_privilege(\(app.role), c.oid, 'INSERT'),
                           has_table_privilege(\(app.role), c.oid, 'UPDATE'), has_table_privilege(\(app.role), c.oid, 'DELETE'),
                           has_table_privilege(\(app.role), c.oid, 'TRUNCATE')
                    FROM pg_class c WHERE c.oid = \(table.sql)::regclass
                    """
                ).decode((Bool, Bool, Bool, Bool, Bool, Bool).self) {
                    owns = isOwner
                    held = zip(["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"], [select, insert, update, delete, truncate]).filter(\.1).map(\.0)
                }
                if expected == .owns {
                    if !owns { out.append("\(app.name) (\(app.role)) should own \(table) (\(manifest.path)) and does not: run tally db roles --owners") }
                } else if owns {
                    out.append("\(app.name) (\(app.role)) owns \(table), which the manifest gives it only \(expected == .none ? "no access to" : expected == .reads ? "to read" : "to write"): it may change or drop it")
                } else if held != expected.privileges {
                    let gives = expected.privileges.isEmpty ? "nothing" : expected.privileges.joined(separator: ", ")
                    out.append("\(app.name) (\(app.role)) holds \(held.isEmpty ? "nothing" : held.joined(separator: ", ")) on \(table); the manifest gives \(gives)")
                }
            }
        }
        return out
    }
}
