import Foundation
import PostgresNIO
import TallyPostgres

/// The named objects of a database — tables, columns, constraints, indexes, sequences, views, enum types —
/// as comparable strings like `column public.users.email`.
enum SchemaObjects {
    static func list(on connection: DatabaseConnection, excluding history: HistoryTable) async throws -> Set<String> {
        let result = try await connection.query("""
            WITH rel AS (
                SELECT c.oid, c.relname, c.relkind, n.nspname
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'tally_migrate') AND n.nspname NOT LIKE 'pg_toast%'
                  AND n.nspname NOT LIKE 'pg_temp%'
            )
            SELECT CASE relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view'
                   WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence' ELSE 'index' END
                   || ' ' || nspname || '.' || relname
            FROM rel WHERE relkind IN ('r', 'p', 'v', 'm', 'S', 'i')
            UNION ALL
            SELECT 'column ' || rel.nspname || '.' || rel.relname || '.' || a.attname
            FROM pg_attribute a JOIN rel ON rel.oid = a.attrelid
            WHERE rel.relkind IN ('r', 'p', 'v', 'm') AND a.attnum > 0 AND NOT a.attisdropped
            UNION ALL
            SELECT 'constraint ' || rel.nspname || '.' || rel.relname || '.' || con.conname
            FROM pg_constraint con JOIN rel ON rel.oid = con.conrelid
            UNION ALL
            SELECT 'type ' || n.nspname || '.' || t.typname
            FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
            WHERE t.typtype = 'e' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
            """)
        var objects: Set<String> = []
        let ownPrefixes = ["\(history.schema).\(history.table)", "\(history.schema).__tally_"]
        for try await object in result.decode(String.self) {
            let name = object.drop(while: { $0 != " " }).dropFirst()
            if object.hasPrefix("materialized") {
                objects.insert(object)
                continue
            }
            if ownPrefixes.contains(where: { name.hasPrefix($0) }) { continue }
            objects.insert(object)
        }
        if history.schema != "public" { objects.remove("schema \(history.schema)") }
        return objects
    }

    /// Applies `migrations` to a scratch database on the same server, then lists what they create that the
    /// live database lacks. The scratch database is dropped afterwards.
    static func missing(
        applying migrations: [Migration], to live: ConnectionSettings, excluding history: HistoryTable,
        progress: @Sendable (String) -> Void
    ) async throws -> [String] {
        let created = try await createdByEach(migrations, live: live, excluding: history, progress: progress)
        let actual = try await withSingleConnection(live) { try await list(on: $0, excluding: history) }
        return created.values.reduce(into: Set<String>()) { $0.formUnion($1) }.subtracting(actual).sorted()
    }

    /// What each migration creates: applied one by one to a scratch database on the same server, with the
    /// objects listed after each. The scratch database is dropped afterwards.
    static func createdByEach(
        _ migrations: [Migration], live: ConnectionSettings, excluding history: HistoryTable,
        progress: @Sendable (String) -> Void
    ) async throws -> [String: Set<String>] {
        try await withScratchDatabase(
            live, purpose: "checking what the migrations create", history: history,
            otherwise: "or mark them anyway with --force if you know the schema is there"
        ) { scratch in
            progress("Applying \(migrations.count) migration(s) to scratch database \(scratch.database) to see what they create.")
            return try await withSingleConnection(scratch) { connection in
                var before = try await list(on: connection, excluding: history)
                var created: [String: Set<String>] = [:]
                for migration in migrations {
                    try await applyPlainly(migration, on: connection)
                    let after = try await list(on: connection, excluding: history)
                    created[migration.tag] = after.subtracting(before)
                    before = after
                }
                return created
            }
        }
    }

    /// Runs a migration's statements as written, for scratch databases.
    static func applyPlainly(_ migration: Migration, on connection: DatabaseConnection) async throws {
        for (n, statement) in migration.statements.enumerated() {
            do {
                try await connection.run(statement.text)
            } catch {
                throw MigrateError(
                    .baselineRefused,
                    "\(migration.tag) fails on a scratch database at statement \(n + 1) (\(migration.file):\(statement.line)): \(describe(error)). The check applies the migrations to an empty database with the live one's extensions; fix the file so it applies there.")
            }
        }
    }

    /// A new empty database on the same server for `body`, dropped afterwards whatever happens. It gets the
    /// live database's extensions (a migration may use `vector` or `citext` without creating it) and an
    /// empty history table of the same shape (a migration may read or write it).
    static func withScratchDatabase<T: Sendable>(
        _ live: ConnectionSettings, purpose: String, history: HistoryTable = .drizzleDefault, otherwise: String,
        _ body: (ConnectionSettings) async throws -> T
    ) async throws -> T {
        let scratch = "tally_scratch_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16).lowercased()
        var extensions: [String] = []
        var historyColumns: Set<String> = []
        // A live database that cannot be reached says so itself; only a refused CREATE DATABASE is about rights.
        try await withSingleConnection(live) { connection in
            for try await name in try await connection.query(
                "SELECT extname::text FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY oid"
            ).decode(String.self) { extensions.append(name) }
            historyColumns = try await history.columns(on: connection)
            do {
                try await connection.run("CREATE DATABASE \(quoteIdentifier(scratch))")
            } catch {
                let cause = describe(error)
                throw MigrateError(
                    .baselineRefused,
                    "\(purpose) needs a scratch database on the server, and creating one failed: \(cause)\(cause.hasSuffix(".") ? "" : ".") Grant CREATEDB to this user, \(otherwise).")
            }
        }
        do {
            let settings = live.with(database: scratch)
            try await withSingleConnection(settings) { connection in
                for name in extensions {
                    do {
                        try await connection.run("CREATE EXTENSION IF NOT EXISTS \(quoteIdentifier(name)) CASCADE")
                    } catch {
                        throw MigrateError(.baselineRefused, "\(purpose): the live database has extension \(name), and the scratch database cannot create it: \(describe(error)). \(otherwise.prefix(1).uppercased() + otherwise.dropFirst()).", underlying: error)
                    }
                }
                try await connection.run("CREATE SCHEMA IF NOT EXISTS \(quoteIdentifier(history.schema))")
                try await connection.run("CREATE TABLE IF NOT EXISTS \(history.sql) (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)")
                if historyColumns.contains("name") { try await connection.run("ALTER TABLE \(history.sql) ADD COLUMN name text") }
                if historyColumns.contains("applied_at") { try await connection.run("ALTER TABLE \(history.sql) ADD COLUMN applied_at timestamptz DEFAULT now()") }
            }
            let result = try await body(settings)
            try await dropScratch(scratch, admin: live)
            return result
        } catch {
            try? await dropScratch(scratch, admin: live)
            throw error
        }
    }

    private static func dropScratch(_ name: String, admin: ConnectionSettings) async throws {
        try await withSingleConnection(admin) { connection in
            try await connection.run("DROP DATABASE IF EXISTS \(quoteIdentifier(name)) WITH (FORCE)")
        }
    }
}
