import Foundation
import PostgresNIO
import TallyPostgres

/// `tally db verify`: the live schema against the schema the migrations produce (applied to a scratch
/// database on the same server), plus the problems the seed had: redundant foreign keys, constraints left
/// NOT VALID, foreign keys whose columns have no index.
public struct SchemaVerification: Sendable, Codable {
    public struct Difference: Sendable, Codable, Equatable {
        /// "missing" (the migrations make it, live lacks it), "extra" (only in live) or "changed".
        public var kind: String
        public var object: String
        public var expected: String?
        public var actual: String?

        public init(kind: String, object: String, expected: String?, actual: String?) {
            (self.kind, self.object, self.expected, self.actual) = (kind, object, expected, actual)
        }
    }

    public struct Finding: Sendable, Codable, Equatable {
        /// "redundant-foreign-key", "not-valid-constraint", "unindexed-foreign-key" or "invalid-index".
        public var kind: String
        public var message: String
    }

    public var differences: [Difference]
    public var findings: [Finding]
    public var hasDrift: Bool { !differences.isEmpty }
}

public enum SchemaVerify {
    /// Every table, column (type, nullability, default), constraint (its definition, actions included) and
    /// index (its definition), keyed like `column public.users.email`.
    static func snapshot(on connection: DatabaseConnection, excluding history: HistoryTable) async throws -> [String: String] {
        let result = try await connection.query("""
            WITH rel AS (
                SELECT c.oid, c.relname, c.relkind, n.nspname
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'tally_archive', 'tally_migrate')
                  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
            )
            SELECT 'table ' || nspname || '.' || relname, 'table' FROM rel WHERE relkind IN ('r', 'p')
            UNION ALL
            SELECT 'column ' || rel.nspname || '.' || rel.relname || '.' || a.attname,
                   format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE ' NULL' END
                   || COALESCE(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
            FROM pg_attribute a JOIN rel ON rel.oid = a.attrelid
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE rel.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
            UNION ALL
            SELECT 'constraint ' || rel.nspname || '.' || rel.relname || '.' || con.conname, pg_get_constraintdef(con.oid)
            FROM pg_constraint con JOIN rel ON rel.oid = con.conrelid
            UNION ALL
            SELECT 'index ' || rel.nspname || '.' || rel.relname, pg_get_indexdef(rel.oid)
            FROM rel WHERE relkind = 'i'
            """)
        var out: [String: String] = [:]
        for try await (key, value) in result.decode((String, String).self) {
            // Migration bookkeeping (this history table, any other __drizzle_migrations, Tally's own) is not schema.
            let name = key.drop(while: { $0 != " " }).dropFirst()
            let relation = name.split(separator: ".").dropFirst().first.map(String.init) ?? ""
            if relation == history.table || relation.hasPrefix(history.table + "_") || relation.hasPrefix("__drizzle_migrations")
                || relation.hasPrefix("__tally_") { continue }
            out[key] = value
        }
        return out
    }

    /// Compares `live` with what `folder`'s applied migrations (those its history records) produce on a
    /// scratch database; pending migrations are not drift.
    public static func verify(
        _ live: ConnectionSettings, against folder: MigrationFolder, historyTable: HistoryTable,
        progress: @Sendable (String) -> Void = { _ in }
    ) async throws -> SchemaVerification {
        let report = try await Migrator(folder: folder, database: live, historyTable: historyTable).status()
        let appliedTags = Set(report.entries.filter { $0.state == .applied || $0.state == .baseline || $0.state == .changed }.map(\.tag))
        let applied = folder.migrations.filter { appliedTags.contains($0.tag) }
        let pending = folder.migrations.count - applied.count
        let expected = try await SchemaObjects.withScratchDatabase(
            live, purpose: "tally db verify", history: historyTable, otherwise: "or run it as a user that may create databases"
        ) { scratch in
            progress("Applying the \(applied.count) applied migration(s) to scratch database \(scratch.database)\(pending > 0 ? " (\(pending) pending, not compared)" : "").")
            return try await withSingleConnection(scratch) { connection in
                for migration in applied { try await SchemaObjects.applyPlainly(migration, on: connection) }
                return try await snapshot(on: connection, excluding: historyTable)
            }
        }
        return try await withSingleConnection(live) { connection in
            let actual = try await snapshot(on: connection, excluding: historyTable)
            var differences: [SchemaVerification.Difference] = []
            for key in Set(expected.keys).union(actual.keys).sorted() {
                switch (expected[key], actual[key]) {
                case (let e?, nil): differences.append(.init(kind: "missing", object: key, expected: e, actual: nil))
                case (nil, let a?): differences.append(.init(kind: "extra", object: key, expected: nil, actual: a))
                case (let e?, let a?) where e != a: differences.append(.init(kind: "changed", object: key, expected: e, actual: a))
                default: break
                }
            }
            return SchemaVerification(differences: differences, findings: try await findings(on: connection))
        }
    }

    /// Redundant foreign keys, NOT VALID constraints, and foreign keys with no index on their columns.
    static func findings(on connection: DatabaseConnection) async throws -> [SchemaVerification.Finding] {
        var out: [SchemaVerification.Finding] = []
        for index in try await MigrationBookkeeping.invalidIndexes(on: connection) {
            out.append(.init(kind: "invalid-index", message: "\(index) is INVALID (an interrupted CREATE INDEX CONCURRENTLY leaves one): it costs every write and serves no read; `tally migrate up` rebuilds it when its migration runs again, or DROP INDEX CONCURRENTLY \(index.sql)"))
        }
        let keys = try await OrphanScan.declaredForeignKeys(on: connection).map(\.0)
        var groups: [String: [String]] = [:]
        for fk in keys {
            let signature = "\(fk.table)(\(fk.columns.joined(separator: ","))) → \(fk.referencedTable)(\(fk.referencedColumns.joined(separator: ",")))"
            groups[signature, default: []].append(fk.name ?? "?")
        }
        for (signature, names) in groups.sorted(by: { $0.key < $1.key }) where names.count > 1 {
            out.append(.init(kind: "redundant-foreign-key", message: "\(names.sorted().joined(separator: " and ")) are the same key \(signature): every write checks it twice; drop all but one"))
        }
        let notValid = try await connection.query("""
            SELECT n.nspname || '.' || c.relname, con.conname::text FROM pg_constraint con
            JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE NOT con.convalidated ORDER BY 1, 2
            """)
        for try await (table, name) in notValid.decode((String, String).self) {
            out.append(.init(kind: "not-valid-constraint", message: "\(name) on \(table) is NOT VALID: old rows are unchecked; run ALTER TABLE … VALIDATE CONSTRAINT (tally db orphans shows what would fail)"))
        }
        let unindexed = try await connection.query("""
            SELECT n.nspname || '.' || c.relname, con.conname::text
            FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE con.contype = 'f' AND n.nspname NOT IN ('tally_archive')
              AND NOT EXISTS (
                SELECT 1 FROM pg_index i WHERE i.indrelid = con.conrelid
                  AND (i.indkey::int2[])[0:array_length(con.conkey, 1) - 1] @> con.conkey
                  AND (i.indkey::int2[])[0:array_length(con.conkey, 1) - 1] <@ con.conkey)
            ORDER BY 1, 2
            """)
        for try await (table, name) in unindexed.decode((String, String).self) {
            out.append(.init(kind: "unindexed-foreign-key", message: "\(name) on \(table) has no index on its columns: deleting a referenced row scans \(table)"))
        }
        return out
    }
}
