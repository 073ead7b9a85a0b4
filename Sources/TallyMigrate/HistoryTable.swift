import Foundation
import PostgresNIO
import TallyPostgres

/// Drizzle's migration history table, kept exactly in Drizzle's shape: for 0.x folders
/// `(id serial, hash text not null, created_at bigint)` and nothing more; for Drizzle 1.0 folders
/// `name text` and `applied_at timestamptz DEFAULT now()` besides. What Tally knows beyond that (when and by
/// whom a migration ran, whether `baseline` marked it) lives in `MigrationBookkeeping`'s own schema.
public struct HistoryTable: Sendable, Equatable, CustomStringConvertible {
    public var schema: String
    public var table: String

    public static let drizzleDefault = HistoryTable(schema: "drizzle", table: "__drizzle_migrations")

    public init(schema: String, table: String) {
        self.schema = schema
        self.table = table
    }

    /// `schema.table` or `table` (schema `drizzle`), as given to `--history-table`.
    public init(parsing text: String) throws(MigrateError) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard (1...2).contains(parts.count),
            parts.allSatisfy({ !$0.isEmpty && $0.utf8.count <= 63 && $0.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" } })
        else {
            throw MigrateError(.invalidHistoryTable, "--history-table must be schema.table or table, letters, digits and _ only, each part at most 63 bytes (got \"\(text.prefix(80))\")")
        }
        self.init(schema: parts.count == 2 ? parts[0] : "drizzle", table: parts.last!)
    }

    public var description: String { "\(schema).\(table)" }
    /// The quoted, qualified name for SQL.
    public var sql: String { quoteIdentifier(schema) + "." + quoteIdentifier(table) }

    /// One row of the history, with what Tally's bookkeeping knows of it.
    public struct Row: Sendable, Equatable, Codable {
        public var id: Int
        public var hash: String
        public var createdAt: Int64?
        /// Drizzle 1.0's `name` column; nil in a 0.x table.
        public var name: String?
        /// When it was applied: Tally's record, else Drizzle 1.0's `applied_at`; nil when nobody recorded it.
        public var appliedAt: Date?
        /// Marked applied by `tally migrate baseline` without running.
        public var baseline: Bool
    }

    /// The columns the table has; empty when it does not exist.
    func columns(on connection: DatabaseConnection) async throws -> Set<String> {
        let result = try await connection.query(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass(\(sql)) AND attnum > 0 AND NOT attisdropped")
        var names: Set<String> = []
        for try await name in result.decode(String.self) { names.insert(name) }
        return names
    }

    /// All rows, oldest first; empty when the table does not exist yet. `created_at` may be bigint, numeric
    /// or text (some apps create the table themselves).
    func rows(on connection: DatabaseConnection) async throws -> [Row] {
        let columns = try await columns(on: connection)
        guard !columns.isEmpty else { return [] }
        let name = columns.contains("name") ? "h.name::text" : "NULL::text"
        let drizzleAppliedAt = columns.contains("applied_at") ? "h.applied_at::timestamptz" : "NULL::timestamptz"
        let bookkeeping = try await MigrationBookkeeping.exists(on: connection)
        let join = bookkeeping
            ? "LEFT JOIN \(MigrationBookkeeping.applied) t ON t.history_table = \(quoteLiteral(description)) AND t.history_id = h.id"
            : ""
        let appliedAt = bookkeeping ? "COALESCE(t.applied_at, \(drizzleAppliedAt))" : drizzleAppliedAt
        let baseline = bookkeeping ? "COALESCE(t.baseline, false)" : "false"
        let result = try await connection.query(PostgresQuery(unsafeSQL: """
            SELECT h.id::int, h.hash::text, h.created_at::text, \(name), \(appliedAt), \(baseline)
            FROM \(sql) h \(join) ORDER BY h.id
            """))
        var out: [Row] = []
        for try await (id, hash, createdAt, name, appliedAt, baseline) in result.decode((Int, String, String?, String?, Date?, Bool).self) {
            out.append(Row(id: id, hash: hash, createdAt: createdAt.flatMap(Self.millis), name: name, appliedAt: appliedAt, baseline: baseline))
        }
        return out
    }

    /// `created_at` as text (from bigint, numeric or text) to milliseconds.
    static func millis(_ text: String) -> Int64? {
        if let n = Int64(text) { return n }
        if let d = Decimal(string: text) { return Int64(truncating: NSDecimalNumber(decimal: d)) }
        return nil
    }

    /// Other `__drizzle_migrations` tables in the database (the seed's `public.__drizzle_migrations`), with their row counts.
    func others(on connection: DatabaseConnection) async throws -> [(HistoryTable, Int)] {
        let result = try await connection.query(
            "SELECT schemaname::text, tablename::text FROM pg_tables WHERE tablename = '__drizzle_migrations' ORDER BY 1")
        var tables: [HistoryTable] = []
        for try await (s, t) in result.decode((String, String).self) where !(s == schema && t == table) {
            tables.append(HistoryTable(schema: s, table: t))
        }
        var out: [(HistoryTable, Int)] = []
        for other in tables {
            let count = try await connection.query("SELECT count(*)::int FROM \(unescaped: other.sql)")
            for try await n in count.decode(Int.self) { out.append((other, n)) }
        }
        return out
    }

    /// Writes the history row Drizzle would write for `migration` (with `name` in a 1.0 table; `applied_at`
    /// is the column's default) and Tally's record of it, in the caller's transaction.
    func insert(_ migration: Migration, baseline: Bool, columns: Set<String>, on connection: DatabaseConnection) async throws {
        let query: PostgresQuery = columns.contains("name")
            ? "INSERT INTO \(unescaped: sql) (hash, created_at, name) VALUES (\(migration.hash), \(migration.createdAt), \(migration.tag)) RETURNING id::int"
            : "INSERT INTO \(unescaped: sql) (hash, created_at) VALUES (\(migration.hash), \(migration.createdAt)) RETURNING id::int"
        var id = 0
        for try await value in try await connection.query(query).decode(Int.self) { id = value }
        try await connection.execute(
            """
            INSERT INTO \(unescaped: MigrationBookkeeping.applied) (history_table, history_id, hash, tag, baseline)
            VALUES (\(description), \(id), \(migration.hash), \(migration.tag), \(baseline))
            ON CONFLICT (history_table, history_id) DO UPDATE SET hash = excluded.hash, tag = excluded.tag,
                baseline = excluded.baseline, applied_at = now(), applied_by = current_user
            """)
    }
}

/// A SQL string literal: only for names Tally built itself (history table names are validated).
func quoteLiteral(_ text: String) -> String {
    "'" + text.replacingOccurrences(of: "'", with: "''") + "'"
}

extension DatabaseConnection {
    /// Runs SQL text without parameters, one statement at a time as the parser splits it (the extended
    /// protocol takes one statement per query).
    func run(_ sql: String) async throws {
        for piece in try SQLParser.split(sql) {
            try await execute(PostgresQuery(unsafeSQL: piece.text))
        }
    }
}
