import Foundation
import PostgresNIO
import TallyPostgres

/// Tally's own records about migrations, in its own schema `tally_migrate`, so Drizzle's history table keeps
/// exactly Drizzle's shape. Each record names the history table it belongs to (`schema.table`).
///
/// - `applied`: when and by whom each history row was written, and whether `baseline` wrote it.
/// - `failures`: the last failed run of a migration, for the next `status` to show.
/// - `validations`: foreign keys a committed migration added NOT VALID that are still to be validated,
///   keyed by the migration's hash; written in the migration's own transaction, so a later run resumes
///   from the record and never guesses from the catalog.
/// - `removed_history_rows`: history rows `repair` removed, restorable.
enum MigrationBookkeeping {
    static let schema = "tally_migrate"
    static let applied = "tally_migrate.applied"
    static let failures = "tally_migrate.failures"
    static let validations = "tally_migrate.validations"
    static let removedRows = "tally_migrate.removed_history_rows"

    /// Creates Tally's records in one transaction, so a reader outside the runner lease (a replica's
    /// `status` while another applies) finds all of them or none.
    static func ensure(on connection: DatabaseConnection) async throws {
        try await createSerialised(on: connection, """
            CREATE SCHEMA IF NOT EXISTS tally_migrate;
            CREATE TABLE IF NOT EXISTS tally_migrate.applied (
                history_table text NOT NULL, history_id int NOT NULL, hash text NOT NULL, tag text NOT NULL,
                baseline boolean NOT NULL DEFAULT false,
                applied_at timestamptz DEFAULT now(), applied_by text NOT NULL DEFAULT current_user,
                PRIMARY KEY (history_table, history_id));
            CREATE TABLE IF NOT EXISTS tally_migrate.failures (
                history_table text NOT NULL, tag text NOT NULL, hash text NOT NULL, statement int,
                error text NOT NULL, failed_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (history_table, tag));
            CREATE TABLE IF NOT EXISTS tally_migrate.validations (
                history_table text NOT NULL, hash text NOT NULL, tag text NOT NULL, position int NOT NULL,
                table_schema text NOT NULL, table_name text NOT NULL, constraint_name text NOT NULL,
                recorded_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (history_table, hash, position));
            CREATE TABLE IF NOT EXISTS tally_migrate.removed_history_rows (
                history_table text NOT NULL, id int, hash text, created_at text, name text,
                removed_at timestamptz NOT NULL DEFAULT now(), removed_by text NOT NULL DEFAULT current_user)
            """)
    }

    /// Runs `sql` (creations in `tally_migrate`) in one transaction holding a transaction-scoped advisory lock,
    /// so runners starting at once create each object once (concurrent `CREATE … IF NOT EXISTS` can fail on
    /// the catalog's unique keys), and a pooler cannot strand the lock.
    static func createSerialised(on connection: DatabaseConnection, _ sql: String) async throws {
        try await connection.transaction {
            try await connection.execute("SELECT pg_advisory_xact_lock(hashtextextended('tally_migrate', 0))")
            try await connection.run(sql)
        }
    }

    static func exists(on connection: DatabaseConnection) async throws -> Bool {
        for try await _ in try await connection.query(
            "SELECT 1 FROM pg_tables WHERE schemaname = 'tally_migrate' AND tablename = 'applied'")
        { return true }
        return false
    }

    /// A foreign key left NOT VALID by a committed migration.
    struct PendingValidation: Sendable {
        var hash: String
        var tag: String
        var position: Int
        var table: QualifiedName
        var constraint: String
    }

    static func pendingValidations(_ history: HistoryTable, on connection: DatabaseConnection) async throws -> [PendingValidation] {
        guard try await exists(on: connection) else { return [] }
        var out: [PendingValidation] = []
        for try await (hash, tag, position, schema, table, constraint) in try await connection.query(
            """
            SELECT hash, tag, position, table_schema, table_name, constraint_name FROM tally_migrate.validations
            WHERE history_table = \(history.description) ORDER BY recorded_at, position
            """
        ).decode((String, String, Int, String, String, String).self) {
            out.append(PendingValidation(hash: hash, tag: tag, position: position, table: QualifiedName(schema: schema, name: table), constraint: constraint))
        }
        return out
    }

    static func recordValidation(_ v: PendingValidation, history: HistoryTable, on connection: DatabaseConnection) async throws {
        try await connection.execute(
            """
            INSERT INTO tally_migrate.validations (history_table, hash, tag, position, table_schema, table_name, constraint_name)
            VALUES (\(history.description), \(v.hash), \(v.tag), \(v.position), \(v.table.schema), \(v.table.name), \(v.constraint))
            ON CONFLICT (history_table, hash, position) DO NOTHING
            """)
    }

    static func clearValidation(_ v: PendingValidation, history: HistoryTable, on connection: DatabaseConnection) async throws {
        try await connection.execute(
            "DELETE FROM tally_migrate.validations WHERE history_table = \(history.description) AND hash = \(v.hash) AND position = \(v.position)")
    }

    static func recordFailure(_ migration: Migration, statement: Int?, message: String, history: HistoryTable, on connection: DatabaseConnection) async throws {
        try await connection.execute(
            """
            INSERT INTO tally_migrate.failures (history_table, tag, hash, statement, error)
            VALUES (\(history.description), \(migration.tag), \(migration.hash), \(statement), \(message))
            ON CONFLICT (history_table, tag) DO UPDATE
            SET hash = excluded.hash, statement = excluded.statement, error = excluded.error, failed_at = now()
            """)
    }

    static func clearFailure(_ migration: Migration, history: HistoryTable, on connection: DatabaseConnection) async throws {
        try await connection.execute(
            "DELETE FROM tally_migrate.failures WHERE history_table = \(history.description) AND tag = \(migration.tag)")
    }

    /// The failure recorded by the last run of each migration that failed and has not succeeded since.
    static func failures(_ history: HistoryTable, on connection: DatabaseConnection) async throws -> [MigrationFailure] {
        guard try await exists(on: connection) else { return [] }
        let result = try await connection.query(
            "SELECT tag, hash, statement, error, failed_at FROM tally_migrate.failures WHERE history_table = \(history.description) ORDER BY failed_at")
        var out: [MigrationFailure] = []
        for try await (tag, hash, statement, error, at) in result.decode((String, String, Int?, String, Date).self) {
            out.append(MigrationFailure(tag: tag, hash: hash, statement: statement, error: error, failedAt: at))
        }
        return out
    }

    /// Indexes PostgreSQL marks INVALID: what a `CREATE INDEX CONCURRENTLY` leaves when it is interrupted.
    static func invalidIndexes(on connection: DatabaseConnection) async throws -> [QualifiedName] {
        var out: [QualifiedName] = []
        for try await (schema, name) in try await connection.query(
            """
            SELECT n.nspname::text, c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT i.indisvalid ORDER BY 1, 2
            """
        ).decode((String, String).self) { out.append(QualifiedName(schema: schema, name: name)) }
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
