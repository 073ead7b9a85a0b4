import Foundation
import PostgresNIO
import TallyPostgres

extension HistoryTable {
    /// Creates the history table in the shape Drizzle gives it for `folder`'s generation, and Tally's
    /// bookkeeping; puts back into Drizzle's shape a table an earlier Tally reshaped; upgrades a 0.x table
    /// for a Drizzle 1.0 folder exactly as Drizzle 1.0's migrator does. Returns the table's columns.
    /// Each change is told to `progress`.
    func prepare(for folder: MigrationFolder, on connection: DatabaseConnection, progress: (String) -> Void) async throws -> Set<String> {
        try await MigrationBookkeeping.ensure(on: connection)
        try await adoptEarlierBookkeeping(on: connection, progress: progress)
        try await connection.run("CREATE SCHEMA IF NOT EXISTS \(quoteIdentifier(schema))")
        if folder.kind == .drizzle1 {
            try await connection.run("""
                CREATE TABLE IF NOT EXISTS \(sql) (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint, \
                name text, applied_at timestamp with time zone DEFAULT now())
                """)
        } else {
            try await connection.run("CREATE TABLE IF NOT EXISTS \(sql) (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)")
        }
        var columns = try await columns(on: connection)
        let rows = try await rows(on: connection)
        let tags = Set(folder.migrations.map(\.tag))
        if folder.kind != .drizzle1, columns.contains("name"), columns.contains("applied_at"),
            rows.allSatisfy({ $0.name == nil || tags.contains($0.name!) })
        {
            // An earlier Tally added Drizzle 1.0's columns to a 0.x table and filled `name` with 0.x tags,
            // which Drizzle 1.0 would read as already upgraded. Keep what they held in Tally's own table.
            try await connection.transaction {
                try await keepEarlierColumns(on: connection)
                try await connection.run("ALTER TABLE \(sql) DROP COLUMN name, DROP COLUMN applied_at")
            }
            progress("\(self) is back in Drizzle 0.x's shape (id, hash, created_at): an earlier Tally had added name and applied_at; what they held is now in \(MigrationBookkeeping.applied).")
            columns = try await self.columns(on: connection)
        }
        if folder.kind == .drizzle1 {
            try await upgradeForDrizzle1(folder, columns: columns, rows: rows, on: connection, progress: progress)
            columns = try await self.columns(on: connection)
        }
        return columns
    }

    /// Drizzle 1.0's upgrade of a 0.x table: each row is matched to a migration folder by `created_at`
    /// truncated to the second, or by hash where several folders share that second or none has it; `name`
    /// is set to the folder's name and `applied_at` to NULL. A row that matches no folder stops it.
    private func upgradeForDrizzle1(
        _ folder: MigrationFolder, columns: Set<String>, rows: [Row], on connection: DatabaseConnection, progress: (String) -> Void
    ) async throws {
        let tags = Set(folder.migrations.map(\.tag))
        let needing = rows.filter { row in
            guard columns.contains("name"), let name = row.name else { return true }
            return !tags.contains(name) && !Self.isDrizzle1Name(name)
        }
        guard !needing.isEmpty || !columns.contains("name") else { return }
        var names: [(Int, String)] = []
        var unmatched: [Row] = []
        for row in needing {
            let second = row.createdAt.map { $0 / 1000 * 1000 }
            let sameSecond = folder.migrations.filter { $0.createdAt == second }
            let match = sameSecond.count == 1 ? sameSecond[0] : (sameSecond.isEmpty ? folder.migrations : sameSecond).first { $0.hash == row.hash }
            if let match { names.append((row.id, match.tag)) } else { unmatched.append(row) }
        }
        guard unmatched.isEmpty else {
            throw MigrateError(.historyProblem, (["\(self) holds Drizzle 0.x rows that match no migration folder of \(folder.path) by time or hash, so it cannot be upgraded to Drizzle 1.0's shape (Drizzle 1.0's migrator refuses it too):"]
                + unmatched.map { "  - row \($0.id): hash \($0.hash.prefix(12))…, created_at \($0.createdAt.map(String.init) ?? "null")" }
                + ["Add the missing migration folders (drizzle-kit up converts a 0.x folder), or remove those rows with `tally migrate repair`."]).joined(separator: "\n"))
        }
        try await connection.transaction {
            if columns.contains("name"), columns.contains("applied_at") { try await keepEarlierColumns(on: connection) }
            try await connection.run("ALTER TABLE \(sql) ADD COLUMN IF NOT EXISTS name text")
            try await connection.run("ALTER TABLE \(sql) ADD COLUMN IF NOT EXISTS applied_at timestamp with time zone DEFAULT now()")
            for (id, name) in names {
                try await connection.execute("UPDATE \(unescaped: sql) SET name = \(name), applied_at = NULL WHERE id = \(id)")
            }
        }
        progress("Upgraded \(self) to Drizzle 1.0's shape as Drizzle 1.0's migrator does: \(names.count) row(s) named after their migration folder, applied_at NULL for them.")
    }

    /// `YYYYMMDDHHMMSS_name`.
    static func isDrizzle1Name(_ name: String) -> Bool {
        name.count > 15 && name.prefix(14).allSatisfy { $0.isASCII && $0.isNumber } && name.dropFirst(14).first == "_"
    }

    /// Copies an earlier Tally's `name` and `applied_at` (NULL meant baseline then) into Tally's own table.
    private func keepEarlierColumns(on connection: DatabaseConnection) async throws {
        try await connection.run("""
            INSERT INTO tally_migrate.applied (history_table, history_id, hash, tag, baseline, applied_at)
            SELECT \(quoteLiteral(description)), id, hash, COALESCE(name, ''), applied_at IS NULL, applied_at FROM \(sql)
            ON CONFLICT (history_table, history_id) DO NOTHING
            """)
    }

    /// An earlier Tally kept failures and removed rows next to the history table; they move to Tally's schema.
    private func adoptEarlierBookkeeping(on connection: DatabaseConnection, progress: (String) -> Void) async throws {
        let failures = HistoryTable(schema: schema, table: "__tally_migration_failures")
        if try await !failures.columns(on: connection).isEmpty {
            try await connection.transaction {
                try await connection.run("""
                    INSERT INTO tally_migrate.failures (history_table, tag, hash, statement, error, failed_at)
                    SELECT history_table, tag, hash, statement, error, failed_at FROM \(failures.sql) ON CONFLICT DO NOTHING
                    """)
                try await connection.run("DROP TABLE \(failures.sql)")
            }
            progress("Moved \(failures) to \(MigrationBookkeeping.failures).")
        }
        let removed = HistoryTable(schema: schema, table: table + "_removed")
        if try await !removed.columns(on: connection).isEmpty {
            try await connection.transaction {
                try await connection.run("""
                    INSERT INTO tally_migrate.removed_history_rows (history_table, id, hash, created_at, name, removed_at, removed_by)
                    SELECT \(quoteLiteral(description)), id, hash, created_at::text, name, removed_at, removed_by FROM \(removed.sql)
                    """)
                try await connection.run("DROP TABLE \(removed.sql)")
            }
            progress("Moved \(removed) to \(MigrationBookkeeping.removedRows).")
        }
    }
}
