import Foundation
import PostgresNIO
import TallyPostgres

/// Moves orphaned rows, and every row that depends on them, into the `tally_archive` schema and deletes
/// them, in one transaction; and puts an archived batch back.
///
/// Each row is archived as JSON (`to_jsonb`) by the same statement that deletes it
/// (`WITH moved AS (DELETE … RETURNING *) INSERT INTO tally_archive.rows …`), so nothing is deleted that is
/// not archived. Dependents are followed through the foreign keys the database declares, and through the
/// columns given as `include` for references it does not declare (the seed's `credit_transactions.user_id`);
/// they are archived first, so an `ON DELETE CASCADE` finds nothing left to delete unarchived.
public enum OrphanArchive {
    public static let schema = "tally_archive"

    /// A reference the database does not declare: `table.column` holds values of the orphaned key.
    public struct Include: Sendable, Codable, Equatable {
        public var table: QualifiedName
        public var column: String
        public init(table: QualifiedName, column: String) {
            self.table = table
            self.column = column
        }
    }

    public struct Moved: Sendable, Codable, Equatable {
        public var table: String
        public var rows: Int
    }

    public struct Batch: Sendable, Codable {
        public var id: Int
        public var createdAt: Date
        public var createdBy: String
        public var reason: String
        public var restoredAt: Date?
        public var moved: [Moved]
    }

    /// One table's rows to move, as a predicate on alias `x`; `order` is the deletion order (dependents first).
    struct Step {
        var table: QualifiedName
        var predicate: String
        var depth: Int
    }

    static func ensure(on connection: DatabaseConnection) async throws {
        try await connection.run("""
            CREATE SCHEMA IF NOT EXISTS tally_archive;
            CREATE TABLE IF NOT EXISTS tally_archive.batches (
                id bigserial PRIMARY KEY,
                created_at timestamptz NOT NULL DEFAULT now(),
                created_by text NOT NULL,
                reason text NOT NULL,
                foreign_keys jsonb NOT NULL,
                restored_at timestamptz
            );
            CREATE TABLE IF NOT EXISTS tally_archive.rows (
                batch_id bigint NOT NULL REFERENCES tally_archive.batches(id),
                ord int NOT NULL,
                table_schema text NOT NULL,
                table_name text NOT NULL,
                "row" jsonb NOT NULL
            );
            CREATE INDEX IF NOT EXISTS rows_batch_idx ON tally_archive.rows (batch_id, ord)
            """)
    }

    /// Archives and deletes the rows violating `foreignKeys` and all rows depending on them; returns the batch.
    public static func clean(
        _ foreignKeys: [ForeignKeyDefinition], include: [Include], reason: String, osUser: String,
        on connection: DatabaseConnection
    ) async throws -> Batch {
        if !include.isEmpty, foreignKeys.contains(where: { $0.columns.count != 1 }) {
            throw MigrateError(.invalidFolder, "--include follows single-column keys only; give --fk for one single-column foreign key")
        }
        let declared = try await OrphanScan.declaredForeignKeys(on: connection).map(\.0)
        var steps: [Step] = []
        for fk in foreignKeys {
            let referenced = try await OrphanScan.resolvedReferencedColumns(fk, on: connection)
            let root = Step(table: fk.table, predicate: OrphanScan.orphanPredicate(fk, referencedColumns: referenced, alias: "x"), depth: 0)
            steps.append(root)
            steps += dependents(of: root, declared: declared, depth: 1)
            if let column = fk.columns.first {
                let keys = "SELECT o.\(quoteIdentifier(column)) FROM \(fk.table.sql) o WHERE \(OrphanScan.orphanPredicate(fk, referencedColumns: referenced, alias: "o"))"
                for extra in include {
                    let step = Step(table: extra.table, predicate: "x.\(quoteIdentifier(extra.column)) IN (\(keys))", depth: 1)
                    steps.append(step)
                    steps += dependents(of: step, declared: declared, depth: 2)
                }
            }
        }
        // Deepest first: a row goes before the rows it depends on.
        let ordered = steps.enumerated().sorted { ($0.element.depth, $0.offset) > ($1.element.depth, $1.offset) }.map(\.element)

        try await ensure(on: connection)
        return try await connection.transaction {
            let keysJSON = String(decoding: try JSONEncoder().encode(foreignKeys), as: UTF8.self)
            var batchID = 0
            for try await id in try await connection.query(
                "INSERT INTO tally_archive.batches (created_by, reason, foreign_keys) VALUES (\(osUser + " as " ) || current_user, \(reason), \(keysJSON)::jsonb) RETURNING id::int"
            ).decode(Int.self) { batchID = id }
            // Marks this transaction as the archive's: a table that refuses deletes (Tally's append-only ledger)
            // lets through those made here, each row archived by the statement that deletes it.
            try await connection.execute("SELECT set_config('tally.archive_batch', \(String(batchID)), true)")
            var moved: [Moved] = []
            for (ord, step) in ordered.enumerated() {
                // Archive exactly the rows deleted, and count them, in one statement.
                let sql = """
                    WITH moved AS (DELETE FROM \(step.table.sql) AS x WHERE \(step.predicate) RETURNING x.*),
                    archived AS (
                        INSERT INTO tally_archive.rows (batch_id, ord, table_schema, table_name, "row")
                        SELECT \(batchID), \(ord), '\(step.table.schema.replacingOccurrences(of: "'", with: "''"))',
                               '\(step.table.name.replacingOccurrences(of: "'", with: "''"))', to_jsonb(moved) FROM moved
                        RETURNING 1)
                    SELECT count(*)::int FROM archived
                    """
                var count = 0
                for try await n in try await connection.query(PostgresQuery(unsafeSQL: sql)).decode(Int.self) {
                    count = n
                }
                if let i = moved.firstIndex(where: { $0.table == step.table.description }) {
                    moved[i].rows += count
                } else {
                    moved.append(Moved(table: step.table.description, rows: count))
                }
            }
            return Batch(id: batchID, createdAt: Date(), createdBy: osUser, reason: reason, restoredAt: nil, moved: moved)
        }
    }

    /// Rows of other tables that reference `step`'s rows through a declared foreign key, recursively.
    static func dependents(of step: Step, declared: [ForeignKeyDefinition], depth: Int) -> [Step] {
        guard depth < 8 else { return [] }
        var out: [Step] = []
        for fk in declared where fk.referencedTable == step.table && !(fk.table == step.table && depth > 1) {
            let inner = step.predicate.replacingOccurrences(of: "x.", with: "p\(depth).")
            let cols = "(" + fk.columns.map { "x.\(quoteIdentifier($0))" }.joined(separator: ", ") + ")"
            let refs = fk.referencedColumns.map { "p\(depth).\(quoteIdentifier($0))" }.joined(separator: ", ")
            let child = Step(
                table: fk.table,
                predicate: "\(cols) IN (SELECT \(refs) FROM \(step.table.sql) p\(depth) WHERE \(inner))",
                depth: depth)
            out.append(child)
            out += dependents(of: child, declared: declared, depth: depth + 1)
        }
        return out
    }

    /// Puts batch `id` back, parents before the rows that depend on them, in one transaction.
    public static func restore(batch id: Int, on connection: DatabaseConnection) async throws -> Batch {
        guard var batch = try await batches(on: connection).first(where: { $0.id == id }) else {
            throw MigrateError(.unknownMigration, "there is no archive batch \(id); list them with `tally db orphans --batches`")
        }
        if let restored = batch.restoredAt {
            throw MigrateError(.historyProblem, "batch \(id) was already restored at \(restored); restoring twice would duplicate rows")
        }
        var parts: [(Int, String, String)] = []
        for try await part in try await connection.query(
            "SELECT DISTINCT ord, table_schema, table_name FROM tally_archive.rows WHERE batch_id = \(id) ORDER BY ord DESC"
        ).decode((Int, String, String).self) { parts.append(part) }
        try await connection.transaction {
            for (ord, schema, table) in parts {
                let target = QualifiedName(schema: schema, name: table).sql
                let sql = """
                    INSERT INTO \(target) OVERRIDING SYSTEM VALUE
                    SELECT (jsonb_populate_record(NULL::\(target), r."row")).* FROM tally_archive.rows r
                    WHERE r.batch_id = \(id) AND r.ord = \(ord)
                    """
                do {
                    try await connection.execute(PostgresQuery(unsafeSQL: sql))
                } catch {
                    throw MigrateError(
                        .migrationFailed,
                        "restoring batch \(id) into \(schema).\(table) failed: \(describe(error)). Nothing was restored. If a foreign key now forbids these rows, restore their parent rows first; the archived rows stay in tally_archive.rows.")
                }
            }
            try await connection.execute("UPDATE tally_archive.batches SET restored_at = now() WHERE id = \(id)")
        }
        batch.restoredAt = Date()
        return batch
    }

    /// Every archived batch, newest first.
    public static func batches(on connection: DatabaseConnection) async throws -> [Batch] {
        var exists = false
        for try await _ in try await connection.query(
            "SELECT 1 FROM pg_tables WHERE schemaname = 'tally_archive' AND tablename = 'batches'") { exists = true }
        guard exists else { return [] }
        var out: [Batch] = []
        for try await (id, at, by, reason, restored) in try await connection.query(
            "SELECT id::int, created_at, created_by, reason, restored_at FROM tally_archive.batches ORDER BY id DESC"
        ).decode((Int, Date, String, String, Date?).self) {
            out.append(Batch(id: id, createdAt: at, createdBy: by, reason: reason, restoredAt: restored, moved: []))
        }
        for i in out.indices {
            for try await (schema, table, n) in try await connection.query(
                "SELECT table_schema, table_name, count(*)::int FROM tally_archive.rows WHERE batch_id = \(out[i].id) GROUP BY 1, 2 ORDER BY 1, 2"
            ).decode((String, String, Int).self) { out[i].moved.append(Moved(table: "\(schema).\(table)", rows: n)) }
        }
        return out
    }
}
