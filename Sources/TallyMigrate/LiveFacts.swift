import Foundation
import PostgresNIO
import TallyPostgres


/// What lint knows of the live database, looked up once per object while a plan is made.
final class LiveFacts {
    struct Table {
        var rows: Int64
        /// `rows` is the planner's estimate (the table is too big to count).
        var estimated: Bool
        /// Planned in a scratch database (`--scratch`): the table's real rows are not known, so it counts as filled.
        var unknown = false
    }

    let connection: DatabaseConnection
    /// The database is a scratch copy of the schema: its empty tables stand for production's filled ones.
    let rowsUnknown: Bool
    private var tables: [QualifiedName: Table?] = [:]
    static let countCap: Int64 = 100_000

    init(connection: DatabaseConnection, rowsUnknown: Bool = false) {
        self.connection = connection
        self.rowsUnknown = rowsUnknown
    }

    /// The live table, or nil when there is none (a table the pending migrations create).
    func table(_ name: QualifiedName) async throws -> Table? {
        if let known = tables[name] { return known }
        var estimate: Double?
        for try await tuples in try await connection.query(
            "SELECT c.reltuples::float8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = \(name.schema) AND c.relname = \(name.name) AND c.relkind IN ('r', 'p', 'm')"
        ).decode(Double.self) {
            estimate = tuples
        }
        var found: Table?
        if let estimate {
            var counted: Int64 = 0
            for try await n in try await connection.query(PostgresQuery(unsafeSQL: "SELECT count(*) FROM (SELECT 1 FROM \(name.sql) LIMIT \(Self.countCap + 1)) s")).decode(Int64.self) {
                counted = n
            }
            if counted > Self.countCap {
                found = Table(rows: max(counted, Int64(estimate)), estimated: true)
            } else {
                // In a scratch copy an empty table stands for production's, whose rows are not known here.
                found = Table(rows: counted, estimated: false, unknown: rowsUnknown && counted == 0)
            }
        }
        tables[name] = found
        return found
    }

    /// True when a query returns a row.
    func exists(_ query: PostgresQuery) async throws -> Bool {
        var found = false
        for try await _ in try await connection.query(query) { found = true }
        return found
    }

    /// The table an index (as written) belongs to, when the index is live.
    func tableOfIndex(_ name: String) async throws -> QualifiedName? {
        for try await (schema, table) in try await connection.query(
            "SELECT n.nspname::text, c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE i.indexrelid = to_regclass(\(name))"
        ).decode((String, String).self) {
            return QualifiedName(schema: schema, name: table)
        }
        return nil
    }

    /// Any function of that name the live database marks volatile.
    func isVolatile(function name: String) async throws -> Bool {
        try await exists("SELECT 1 FROM pg_proc WHERE proname = \(name) AND provolatile = 'v'")
    }

    /// The live column's type as `format_type` writes it (`character varying(100)`), or nil.
    func columnType(_ table: QualifiedName, _ column: String) async throws -> (name: String, modifier: Int)? {
        for try await (type, modifier) in try await connection.query(
            "SELECT t.typname::text, a.atttypmod FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid WHERE a.attrelid = to_regclass(\(table.sql)) AND a.attname = \(column) AND NOT a.attisdropped"
        ).decode((String, Int32).self) {
            return (type, Int(modifier))
        }
        return nil
    }

    /// A validated CHECK constraint on the live table that proves `column IS NOT NULL` (PostgreSQL 12+ then skips SET NOT NULL's scan).
    func hasValidatedNotNullCheck(_ table: QualifiedName, _ column: String) async throws -> Bool {
        try await exists("""
            SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass(\(table.sql)) AND contype = 'c' AND convalidated
            AND regexp_replace(pg_get_constraintdef(oid), '[()"]', '', 'g') = 'CHECK ' || \(column) || ' IS NOT NULL'
            """)
    }

    /// Filled live tables with a column of the domain, with their rows.
    func tablesUsing(domain: String) async throws -> [(QualifiedName, Table)] {
        var names: [QualifiedName] = []
        for try await (schema, table) in try await connection.query(
            "SELECT DISTINCT n.nspname::text, c.relname::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE a.atttypid = to_regtype(\(domain)) AND c.relkind IN ('r', 'p') AND NOT a.attisdropped ORDER BY 1, 2"
        ).decode((String, String).self) {
            names.append(QualifiedName(schema: schema, name: table))
        }
        var out: [(QualifiedName, Table)] = []
        for name in names { if let table = try await table(name), table.rows > 0 || table.unknown { out.append((name, table)) } }
        return out
    }
}

/// One migration's lint state: what it creates, what it added NOT VALID, its BEGINs.
struct LintScope {
    var facts: LiveFacts
    /// Tables the pending migrations create (up to and including this one).
    var newTables: Set<QualifiedName>
    /// The migration runs in one transaction (Tally's), not statement by statement.
    var transactional: Bool
    var onlineRewrite = false
    var statementCount: Int
    /// Constraints this migration added NOT VALID so far (table, name).
    var addedNotValid: Set<String> = []
    var openTransactions = 0
}
