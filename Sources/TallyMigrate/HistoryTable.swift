import Foundation
import PostgresNIO
import TallyPostgres

/// The migration history table, Drizzle-compatible: `id serial, hash text not null, created_at bigint`,
/// plus Drizzle 1.0's nullable `name text` and `applied_at timestamptz default now()`.
///
/// Tally writes `applied_at = NULL` for rows `baseline` marks applied without running them.
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
    var failuresSQL: String { quoteIdentifier(schema) + "." + quoteIdentifier("__tally_migration_failures") }
    var removedSQL: String { quoteIdentifier(schema) + "." + quoteIdentifier(table + "_removed") }

    /// The key of the session advisory lock that serialises runners on this history table.
    var lockKey: Int64 {
        let digest = sha256Hex(Data("tally.migrate:\(description)".utf8))
        return Int64(bitPattern: UInt64(digest.prefix(16), radix: 16)!)
    }

    /// One row of the history.
    public struct Row: Sendable, Equatable, Codable {
        public var id: Int
        public var hash: String
        public var createdAt: Int64?
        public var name: String?
        /// When it was applied; nil when the table has no `applied_at` column, or for baseline rows.
        public var appliedAt: Date?
        /// Written by `baseline`: marked applied without running (`applied_at` is NULL).
        public var baseline: Bool
    }

    /// Creates the schema, the table and the Drizzle 1.0 columns when missing.
    func ensure(on connection: PostgresConnection) async throws {
        try await connection.run("CREATE SCHEMA IF NOT EXISTS \(quoteIdentifier(schema))")
        try await connection.run("""
            CREATE TABLE IF NOT EXISTS \(sql) (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)
            """)
        try await connection.run("ALTER TABLE \(sql) ADD COLUMN IF NOT EXISTS name text")
        try await connection.run("ALTER TABLE \(sql) ADD COLUMN IF NOT EXISTS applied_at timestamptz DEFAULT now()")
        try await connection.run("""
            CREATE TABLE IF NOT EXISTS \(failuresSQL) (
                history_table text NOT NULL, tag text NOT NULL, hash text NOT NULL, statement int,
                error text NOT NULL, failed_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (history_table, tag))
            """)
    }

    func exists(on connection: PostgresConnection) async throws -> Bool {
        let rows = try await connection.query(
            "SELECT 1 FROM pg_tables WHERE schemaname = \(schema) AND tablename = \(table)", logger: LocalCluster.quietLogger)
        for try await _ in rows { return true }
        return false
    }

    /// All rows, oldest first; empty when the table does not exist yet.
    func rows(on connection: PostgresConnection) async throws -> [Row] {
        guard try await exists(on: connection) else { return [] }
        let columns = try await columnNames(on: connection)
        let name = columns.contains("name") ? "name" : "NULL::text"
        let appliedAt = columns.contains("applied_at") ? "applied_at" : "NULL::timestamptz"
        let baseline = columns.contains("applied_at") ? "applied_at IS NULL" : "false"
        let result = try await connection.query(
            "SELECT id, hash, created_at, \(unescaped: name), \(unescaped: appliedAt), \(unescaped: baseline) FROM \(unescaped: sql) ORDER BY id",
            logger: LocalCluster.quietLogger)
        var out: [Row] = []
        for try await (id, hash, createdAt, name, appliedAt, baseline) in result.decode((Int, String, Int64?, String?, Date?, Bool).self) {
            out.append(Row(id: id, hash: hash, createdAt: createdAt, name: name, appliedAt: appliedAt, baseline: baseline))
        }
        return out
    }

    private func columnNames(on connection: PostgresConnection) async throws -> Set<String> {
        let result = try await connection.query(
            "SELECT column_name::text FROM information_schema.columns WHERE table_schema = \(schema) AND table_name = \(table)",
            logger: LocalCluster.quietLogger)
        var names: Set<String> = []
        for try await name in result.decode(String.self) { names.insert(name) }
        return names
    }

    /// Other `__drizzle_migrations` tables in the database (the seed's `public.__drizzle_migrations`), with their row counts.
    func others(on connection: PostgresConnection) async throws -> [(HistoryTable, Int)] {
        let result = try await connection.query(
            "SELECT schemaname::text, tablename::text FROM pg_tables WHERE tablename = '__drizzle_migrations' ORDER BY 1",
            logger: LocalCluster.quietLogger)
        var tables: [HistoryTable] = []
        for try await (s, t) in result.decode((String, String).self) where !(s == schema && t == table) {
            tables.append(HistoryTable(schema: s, table: t))
        }
        var out: [(HistoryTable, Int)] = []
        for other in tables {
            let count = try await connection.query("SELECT count(*)::int FROM \(unescaped: other.sql)", logger: LocalCluster.quietLogger)
            for try await n in count.decode(Int.self) { out.append((other, n)) }
        }
        return out
    }

    /// The failure recorded by the last run of each migration that failed and has not succeeded since.
    func failures(on connection: PostgresConnection) async throws -> [MigrationFailure] {
        let exists = try await connection.query(
            "SELECT 1 FROM pg_tables WHERE schemaname = \(schema) AND tablename = '__tally_migration_failures'",
            logger: LocalCluster.quietLogger)
        var found = false
        for try await _ in exists { found = true }
        guard found else { return [] }
        let result = try await connection.query(
            "SELECT tag, hash, statement, error, failed_at FROM \(unescaped: failuresSQL) WHERE history_table = \(description) ORDER BY failed_at",
            logger: LocalCluster.quietLogger)
        var out: [MigrationFailure] = []
        for try await (tag, hash, statement, error, at) in result.decode((String, String, Int?, String, Date).self) {
            out.append(MigrationFailure(tag: tag, hash: hash, statement: statement, error: error, failedAt: at))
        }
        return out
    }
}

/// What the last failed run of a migration left behind for the next one to report.
public struct MigrationFailure: Sendable, Codable, Equatable {
    public var tag: String
    public var hash: String
    public var statement: Int?
    public var error: String
    public var failedAt: Date
}

extension PostgresConnection {
    /// Runs SQL text without parameters, one statement at a time (PostgreSQL's extended protocol
    /// takes one statement per query).
    func run(_ sql: String) async throws {
        for statement in SQLStatements.split(sql) {
            try await execute(PostgresQuery(unsafeSQL: statement.text))
        }
    }

    /// BEGIN, `body`, COMMIT; ROLLBACK and rethrow (the error as thrown) when `body` throws.
    func transaction<T>(_ body: () async throws -> T) async throws -> T {
        try await run("BEGIN")
        do {
            let result = try await body()
            try await run("COMMIT")
            return result
        } catch {
            try? await run("ROLLBACK")
            throw error
        }
    }
}
