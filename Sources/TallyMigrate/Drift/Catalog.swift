import Foundation
import PostgresNIO
import TallyPostgres

/// The tables of some schemas of a database as PostgreSQL stores them, in the text PostgreSQL itself prints
/// (`format_type`, `pg_get_expr`, `pg_get_constraintdef`, `pg_get_indexdef`): what drift compares. Both sides
/// of a comparison are read this way (the app's declaration is first created in a scratch database), so
/// spelling never counts as drift: `varchar(20)` and `character varying(20)`, `now()` and `now()`, a check
/// written with or without its table's name all come back the same.
public struct Catalog: Sendable, Equatable, Codable {
    public struct Column: Sendable, Equatable, Codable {
        public var name: String
        public var type: String
        public var notNull: Bool
        public var defaultValue: String?
        /// `always` or `by default` for an identity column.
        public var identity: String?
        /// The expression of a generated (stored) column.
        public var generated: String?
    }

    public struct ForeignKey: Sendable, Equatable, Codable {
        public var name: String
        public var columns: [String]
        /// `schema.table`.
        public var referencedTable: String
        public var referencedColumns: [String]
        public var onDelete: String
        public var onUpdate: String

        /// What makes two keys the same key, whatever their names.
        var shape: String { "\(columns.joined(separator: ","))→\(referencedTable)(\(referencedColumns.joined(separator: ",")))" }
        var actions: String { "ON DELETE \(onDelete) ON UPDATE \(onUpdate)" }
    }

    public struct Constraint: Sendable, Equatable, Codable {
        public var name: String
        public var columns: [String]
        /// `pg_get_constraintdef`: `UNIQUE (email)`, `CHECK ((amount > 0))`, `PRIMARY KEY (id)`.
        public var definition: String
    }

    public struct Index: Sendable, Equatable, Codable {
        public var name: String
        /// `pg_get_indexdef` from `USING`: `USING btree (lower(email)) WHERE (deleted_at IS NULL)`.
        public var definition: String
        public var unique: Bool
        var statement: String { "\(unique ? "UNIQUE " : "")\(definition)" }
    }

    public struct Table: Sendable, Equatable, Codable {
        public var schema: String
        public var name: String
        public var columns: [Column] = []
        public var primaryKey: Constraint?
        public var foreignKeys: [ForeignKey] = []
        public var uniques: [Constraint] = []
        public var checks: [Constraint] = []
        /// Indexes that do not back a primary key or unique constraint.
        public var indexes: [Index] = []
        public var qualifiedName: String { "\(schema).\(name)" }

        public func column(_ name: String) -> Column? { columns.first { $0.name == name } }
    }

    /// By `schema.table`.
    public var tables: [String: Table] = [:]
    /// Enum types by `schema.name`, their labels in order.
    public var enums: [String: [String]] = [:]

    /// Reads the tables and enums of `schemas` (all but PostgreSQL's own and Tally's when empty).
    public static func read(on connection: DatabaseConnection, schemas: [String] = []) async throws -> Catalog {
        var catalog = Catalog()
        let filter = schemas.isEmpty
            ? "n.nspname NOT IN ('pg_catalog', 'information_schema', 'tally_migrate', 'tally_archive') AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'"
            : "n.nspname = ANY($1)"
        func query(_ sql: String) -> PostgresQuery {
            var bindings = PostgresBindings()
            if !schemas.isEmpty { bindings.append(schemas) }
            return PostgresQuery(unsafeSQL: sql, binds: bindings)
        }
        for try await (schema, name) in try await connection.query(query(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND \(filter)"
        )).decode((String, String).self) {
            catalog.tables["\(schema).\(name)"] = Table(schema: schema, name: name)
        }
        for try await (schema, table, column, type, notNull, defaultValue, identity, generated) in try await connection.query(query(
            """
            SELECT n.nspname::text, c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                   CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END,
                   CASE a.attidentity WHEN 'a' THEN 'always' WHEN 'd' THEN 'by default' END,
                   CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) END
            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND a.attnum > 0 AND NOT a.attisdropped AND \(filter)
            ORDER BY n.nspname, c.relname, a.attnum
            """
        )).decode((String, String, String, String, Bool, String?, String?, String?).self) {
            catalog.tables["\(schema).\(table)"]?.columns.append(
                Column(name: column, type: type, notNull: notNull, defaultValue: defaultValue, identity: identity, generated: generated))
        }
        for try await (schema, table, name, kind, columns, definition, referenced, referencedColumns, onDelete, onUpdate) in try await connection.query(query(
            """
            SELECT n.nspname::text, c.relname::text, con.conname::text, con.contype::text,
                   coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(con.conkey) WITH ORDINALITY k(num, ord)
                             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num), '{}'),
                   pg_get_constraintdef(con.oid),
                   CASE WHEN con.contype = 'f' THEN (SELECT rn.nspname || '.' || r.relname FROM pg_class r JOIN pg_namespace rn ON rn.oid = r.relnamespace WHERE r.oid = con.confrelid) END,
                   coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(con.confkey) WITH ORDINALITY k(num, ord)
                             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num), '{}'),
                   con.confdeltype::text, con.confupdtype::text
            FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE con.contype IN ('p', 'f', 'u', 'c') AND c.relkind IN ('r', 'p') AND \(filter)
            ORDER BY con.conname
            """
        )).decode((String, String, String, String, [String], String, String?, [String], String, String).self) {
            let key = "\(schema).\(table)"
            let constraint = Constraint(name: name, columns: columns, definition: definition)
            switch kind {
            case "p": catalog.tables[key]?.primaryKey = constraint
            case "u": catalog.tables[key]?.uniques.append(constraint)
            case "c": catalog.tables[key]?.checks.append(constraint)
            default:
                catalog.tables[key]?.foreignKeys.append(ForeignKey(
                    name: name, columns: columns, referencedTable: referenced ?? "?", referencedColumns: referencedColumns,
                    onDelete: Self.action(onDelete), onUpdate: Self.action(onUpdate)))
            }
        }
        for try await (schema, table, name, definition, unique) in try await connection.query(query(
            """
            SELECT n.nspname::text, c.relname::text, i.relname::text, pg_get_indexdef(x.indexrelid), x.indisunique
            FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = x.indexrelid AND con.contype IN ('p', 'u', 'x'))
              AND \(filter)
            ORDER BY i.relname
            """
        )).decode((String, String, String, String, Bool).self) {
            let using = definition.range(of: " USING ").map { String(definition[definition.index(after: $0.lowerBound)...]) } ?? definition
            catalog.tables["\(schema).\(table)"]?.indexes.append(Index(name: name, definition: using, unique: unique))
        }
        for try await (schema, name, labels) in try await connection.query(query(
            """
            SELECT n.nspname::text, t.typname::text, array_agg(e.enumlabel::text ORDER BY e.enumsortorder)
            FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace JOIN pg_enum e ON e.enumtypid = t.oid
            WHERE \(filter) GROUP BY n.nspname, t.typname
            """
        )).decode((String, String, [String]).self) {
            catalog.enums["\(schema).\(name)"] = labels
        }
        return catalog
    }

    static func action(_ code: String) -> String {
        switch code {
        case "r": "RESTRICT"
        case "c": "CASCADE"
        case "n": "SET NULL"
        case "d": "SET DEFAULT"
        default: "NO ACTION"
        }
    }
}
