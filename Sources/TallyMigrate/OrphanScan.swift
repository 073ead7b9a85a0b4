import Foundation
import PostgresNIO
import TallyPostgres

/// Rows whose foreign-key columns point at no row of the referenced table: what `ADD CONSTRAINT … FOREIGN KEY`
/// would reject. Found with an anti-join (`NOT EXISTS`), which PostgreSQL runs as one hash or merge anti-join
/// instead of `NOT IN`'s per-row subplan (and which, unlike `NOT IN`, is right when the parent has NULLs).
public struct OrphanReport: Sendable, Codable {
    public var foreignKey: ForeignKeyDefinition
    /// Where the key comes from: "declared", "declared, NOT VALID", "pending migration 0002_x", "--fk".
    public var source: String
    public var orphanedRows: Int
    /// Up to five distinct missing keys, as text.
    public var sampleKeys: [String]
    public var seconds: Double
}

public enum OrphanScan {
    /// Counts the rows of `fk.table` that violate `fk`, with up to five sample keys.
    /// Rows with a NULL in any key column are not checked by PostgreSQL (MATCH SIMPLE) and are not counted.
    /// `inTransaction`: the caller's transaction is open on `connection` (else the scan opens its own).
    public static func scan(
        _ fk: ForeignKeyDefinition, source: String, inTransaction: Bool = false, on connection: DatabaseConnection
    ) async throws -> OrphanReport {
        // The parent's keys fit in one in-memory hash (no batches spilled to disk) with more than the
        // default 4MB; measured 3.2s → 2.5s on 10M rows against 1M parents. Set for the transaction only
        // (nothing outlives it on a server connection a pooler may hand to another client), and set back
        // after the scan when the transaction is the caller's (a migration's).
        guard inTransaction else {
            return try await connection.transaction { try await scan(fk, source: source, inTransaction: true, on: connection) }
        }
        try await connection.run("SET LOCAL work_mem = '256MB'")
        let report = try await scanWithMemory(fk, source: source, on: connection)
        try await connection.run("SET LOCAL work_mem TO DEFAULT")
        return report
    }

    private static func scanWithMemory(
        _ fk: ForeignKeyDefinition, source: String, on connection: DatabaseConnection
    ) async throws -> OrphanReport {
        let start = ContinuousClock.now
        let referencedColumns = try await resolvedReferencedColumns(fk, on: connection)
        let predicate = orphanPredicate(fk, referencedColumns: referencedColumns, alias: "c")
        var count = 0
        for try await n in try await connection.query(
            PostgresQuery(unsafeSQL: "SELECT count(*)::bigint FROM \(fk.table.sql) c WHERE \(predicate)")
        ).decode(Int.self) { count = n }
        var samples: [String] = []
        if count > 0 {
            let key = fk.columns.map { "c.\(quoteIdentifier($0))::text" }.joined(separator: " || ', ' || ")
            for try await sample in try await connection.query(
                PostgresQuery(unsafeSQL: "SELECT DISTINCT \(key) FROM \(fk.table.sql) c WHERE \(predicate) ORDER BY 1 LIMIT 5")
            ).decode(String.self) { samples.append(sample) }
        }
        let elapsed = ContinuousClock.now - start
        return OrphanReport(
            foreignKey: fk, source: source, orphanedRows: count, sampleKeys: samples,
            seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }

    /// `NOT EXISTS` anti-join of `alias` (a row of fk.table) against the referenced table.
    static func orphanPredicate(_ fk: ForeignKeyDefinition, referencedColumns: [String], alias: String) -> String {
        let notNull = fk.columns.map { "\(alias).\(quoteIdentifier($0)) IS NOT NULL" }
        let match = zip(fk.columns, referencedColumns).map { "p.\(quoteIdentifier($1)) = \(alias).\(quoteIdentifier($0))" }
        return (notNull + ["NOT EXISTS (SELECT 1 FROM \(fk.referencedTable.sql) p WHERE \(match.joined(separator: " AND ")))"])
            .joined(separator: " AND ")
    }

    /// A foreign key written `REFERENCES t` (no columns) points at t's primary key.
    static func resolvedReferencedColumns(_ fk: ForeignKeyDefinition, on connection: DatabaseConnection) async throws -> [String] {
        if !fk.referencedColumns.isEmpty { return fk.referencedColumns }
        var columns: [String] = []
        let query = PostgresQuery(unsafeSQL: """
            SELECT a.attname::text FROM pg_index i
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
            WHERE i.indrelid = '\(fk.referencedTable.sql.replacingOccurrences(of: "'", with: "''"))'::regclass AND i.indisprimary
            ORDER BY array_position(i.indkey, a.attnum)
            """)
        for try await name in try await connection.query(query).decode(String.self) { columns.append(name) }
        return columns
    }

    /// Every foreign key the database declares, validated or not.
    public static func declaredForeignKeys(on connection: DatabaseConnection) async throws -> [(ForeignKeyDefinition, String)] {
        let rows = try await connection.query("""
            SELECT con.conname::text, ns.nspname::text, cl.relname::text,
                   (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(con.conkey) WITH ORDINALITY k(num, ord)
                      JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num),
                   rns.nspname::text, rcl.relname::text,
                   (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(con.confkey) WITH ORDINALITY k(num, ord)
                      JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num),
                   con.convalidated
            FROM pg_constraint con
            JOIN pg_class cl ON cl.oid = con.conrelid JOIN pg_namespace ns ON ns.oid = cl.relnamespace
            JOIN pg_class rcl ON rcl.oid = con.confrelid JOIN pg_namespace rns ON rns.oid = rcl.relnamespace
            WHERE con.contype = 'f' AND ns.nspname NOT IN ('pg_catalog', 'information_schema')
            ORDER BY ns.nspname, cl.relname, con.conname
            """)
        var out: [(ForeignKeyDefinition, String)] = []
        for try await (name, schema, table, columns, rschema, rtable, rcolumns, validated) in rows.decode(
            (String, String, String, [String], String, String, [String], Bool).self)
        {
            let fk = ForeignKeyDefinition(
                name: name, table: QualifiedName(schema: schema, name: table), columns: columns,
                referencedTable: QualifiedName(schema: rschema, name: rtable), referencedColumns: rcolumns, notValid: !validated)
            out.append((fk, validated ? "declared" : "declared, NOT VALID"))
        }
        return out
    }

    /// Whether `table` has every column in `columns`; nil when the table does not exist.
    static func missingColumns(_ table: QualifiedName, _ columns: [String], on connection: DatabaseConnection) async throws -> [String]? {
        var existing: Set<String> = []
        var found = false
        for try await (column) in try await connection.query(
            "SELECT a.attname::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = \(table.schema) AND c.relname = \(table.name) AND a.attnum > 0 AND NOT a.attisdropped"
        ).decode(String.self) {
            found = true
            existing.insert(column)
        }
        if !found {
            // A table with no columns still exists; check pg_class.
            for try await _ in try await connection.query(
                "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = \(table.schema) AND c.relname = \(table.name)") { found = true }
            if !found { return nil }
        }
        return columns.filter { !existing.contains($0) }
    }
}

extension OrphanScan {
    /// Parses `--fk child_table.col=parent_table.col` (schema optional, `public` by default).
    public static func parseForeignKey(_ text: String) throws(MigrateError) -> ForeignKeyDefinition {
        let sides = text.split(separator: "=", omittingEmptySubsequences: false)
        guard sides.count == 2 else {
            throw MigrateError(.invalidFolder, "--fk must look like TABLE.COLUMN=TABLE.COLUMN, e.g. user_credits.user_id=users.id (got \"\(text.prefix(80))\")")
        }
        let (childTable, childColumn) = try parseColumn(String(sides[0]), flag: "--fk")
        let (parentTable, parentColumn) = try parseColumn(String(sides[1]), flag: "--fk")
        return ForeignKeyDefinition(
            name: nil, table: childTable, columns: [childColumn], referencedTable: parentTable,
            referencedColumns: [parentColumn], notValid: false)
    }

    /// Parses `[schema.]table.column`.
    public static func parseColumn(_ text: String, flag: String) throws(MigrateError) -> (QualifiedName, String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard (2...3).contains(parts.count), parts.allSatisfy({ !$0.isEmpty }) else {
            throw MigrateError(.invalidFolder, "\(flag) needs TABLE.COLUMN or SCHEMA.TABLE.COLUMN (got \"\(text.prefix(80))\")")
        }
        let table = parts.count == 3 ? QualifiedName(schema: parts[0], name: parts[1]) : QualifiedName(name: parts[0])
        return (table, parts.last!)
    }

    /// Checks that every table and column a foreign key names exists, with an error that says which does not.
    public static func check(_ fk: ForeignKeyDefinition, on connection: DatabaseConnection) async throws {
        try await check(fk.table, fk.columns, flag: "--fk", on: connection)
        try await check(fk.referencedTable, fk.referencedColumns, flag: "--fk", on: connection)
    }

    /// Checks that `table` exists and has `columns`, with an error naming what does not exist.
    public static func check(_ table: QualifiedName, _ columns: [String], flag: String, on connection: DatabaseConnection) async throws {
        guard let missing = try await missingColumns(table, columns, on: connection) else {
            throw MigrateError(.invalidFolder, "unknown table \(table) in \(flag); check the name (and schema, public by default)")
        }
        if let column = missing.first {
            throw MigrateError(.invalidFolder, "unknown column \(column) in table \(table) (\(flag)); check the name")
        }
    }

    /// Foreign keys that pending migrations of `migrator`'s folder would add to tables and columns that exist
    /// now. A key on a table or column a pending migration creates has no rows to check yet; `migrate up`
    /// counts its orphans inside the migration's transaction, right before the key goes in.
    public static func pendingForeignKeys(_ migrator: Migrator) async throws -> [(ForeignKeyDefinition, String)] {
        let report = try await migrator.status()
        var keys: [(ForeignKeyDefinition, String)] = []
        for entry in report.pending {
            guard let migration = migrator.folder.migrations.first(where: { $0.tag == entry.tag }) else { continue }
            for statement in migration.statements.flatMap(\.flattened) {
                for fk in statement.addedForeignKeys { keys.append((fk, "pending migration \(entry.tag)")) }
            }
        }
        return try await withSingleConnection(migrator.database, logger: migrator.logger) { connection in
            var out: [(ForeignKeyDefinition, String)] = []
            for (fk, source) in keys {
                guard try await missingColumns(fk.table, fk.columns, on: connection)?.isEmpty == true,
                    try await missingColumns(fk.referencedTable, fk.referencedColumns, on: connection)?.isEmpty == true
                else { continue }
                out.append((fk, source))
            }
            return out
        }
    }
}

extension OrphanScan {
    /// PostgreSQL's estimate of a table's rows (pg_class.reltuples), for progress lines; nil when unknown.
    public static func estimatedRows(_ table: QualifiedName, on connection: DatabaseConnection) async throws -> Int? {
        for try await estimate in try await connection.query(
            "SELECT c.reltuples::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = \(table.schema) AND c.relname = \(table.name)"
        ).decode(Int.self) { return estimate >= 0 ? estimate : nil }
        return nil
    }
}

extension OrphanScan {
    /// What `tally db orphans` scans: `explicit` keys (each checked to exist, with the `includes` columns), or
    /// when none are given every key the database declares plus `pending` ones a migration would add. Each
    /// scan is announced through `progress`, and a long one every five seconds.
    public static func scanAll(
        explicit: [ForeignKeyDefinition], includes: [OrphanArchive.Include] = [], pending: [(ForeignKeyDefinition, String)] = [],
        on connection: DatabaseConnection, progress: @escaping @Sendable (String) -> Void = { _ in }
    ) async throws -> [OrphanReport] {
        for fk in explicit { try await check(fk, on: connection) }
        for include in includes { try await check(include.table, [include.column], flag: "--include", on: connection) }
        let targets: [(ForeignKeyDefinition, String)] = explicit.isEmpty
            ? try await declaredForeignKeys(on: connection) + pending
            : explicit.map { ($0, "--fk") }
        var reports: [OrphanReport] = []
        for (fk, source) in targets {
            let estimate = try await estimatedRows(fk.table, on: connection).map { " (~\($0) rows)" } ?? ""
            progress("Scanning \(fk.table)\(estimate) for \(fk.name ?? "\(fk.columns.joined(separator: ","))→\(fk.referencedTable)")…")
            let table = fk.table
            let ticker = Task {
                var seconds = 0
                while true {
                    try await Task.sleep(for: .seconds(5))
                    seconds += 5
                    progress("  … still scanning \(table)\(estimate), \(seconds)s")
                }
            }
            defer { ticker.cancel() }
            reports.append(try await scan(fk, source: source, on: connection))
        }
        return reports
    }
}
