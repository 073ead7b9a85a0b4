import Foundation
import PostgresNIO
import TallyPostgres

extension Migrator {
    public struct RepairResult: Sendable, Codable {
        public struct Rewrite: Sendable, Codable {
            public var rowID: Int
            public var tag: String
            public var oldHash: String
            public var newHash: String
        }
        /// A history row that claims a migration ran although what it creates is missing (a hand-typed row):
        /// removed, so the migration is pending again.
        public struct NotApplied: Sendable, Codable {
            public var rowID: Int
            public var tag: String
            public var missing: [String]
        }
        public var rewrites: [Rewrite]
        public var notApplied: [NotApplied]
        /// Rows no file matches: archived to `tally_migrate.removed_history_rows`, then deleted.
        public var removed: [HistoryTable.Row]
        /// False when only shown (no confirmation given).
        public var applied: Bool

        public var isEmpty: Bool { rewrites.isEmpty && notApplied.isEmpty && removed.isEmpty }
    }

    /// Realigns history rows with files. A row matched to a file by name or created_at whose hash differs is
    /// rewritten when the objects that migration creates exist in the database; when they do not (the row was
    /// typed by hand and the migration never ran), the row is removed so the migration is pending again.
    /// Rows no file matches are removed. Removed rows are archived in `tally_migrate.removed_history_rows` first.
    /// With `apply == false` only shows.
    public func repair(apply: Bool) async throws -> RepairResult {
        let first = try await status()
        var missingByTag: [String: [String]] = [:]
        if let last = first.changed.map(\.index).max() {
            let created = try await SchemaObjects.createdByEach(
                folder.migrations.filter { $0.index <= last }, live: database, excluding: historyTable, progress: progress)
            let live = try await withSingleConnection(database, logger: logger) { try await SchemaObjects.list(on: $0, excluding: historyTable) }
            for entry in first.changed {
                missingByTag[entry.tag] = (created[entry.tag] ?? []).subtracting(live).sorted()
            }
        }
        return try await withRunnerLock { connection, _ in
            let report = try await report(on: connection)
            var result = RepairResult(rewrites: [], notApplied: [], removed: report.unknownRows, applied: false)
            for entry in report.changed {
                let missing = missingByTag[entry.tag] ?? []
                if missing.isEmpty {
                    result.rewrites.append(.init(rowID: entry.rowID ?? 0, tag: entry.tag, oldHash: entry.rowHash ?? "", newHash: entry.hash))
                } else {
                    result.notApplied.append(.init(rowID: entry.rowID ?? 0, tag: entry.tag, missing: missing))
                }
            }
            guard apply, !result.isEmpty else { return result }
            let columns = try await historyTable.prepare(for: folder, on: connection, progress: progress)
            try await connection.transaction {
                for rewrite in result.rewrites {
                    let migration = try folder.migration(tag: rewrite.tag)
                    try await connection.execute(
                        "UPDATE \(unescaped: historyTable.sql) SET hash = \(migration.hash), created_at = \(migration.createdAt) WHERE id = \(rewrite.rowID)")
                    if columns.contains("name") {
                        try await connection.execute(
                            "UPDATE \(unescaped: historyTable.sql) SET name = \(migration.tag) WHERE id = \(rewrite.rowID)")
                    }
                }
                let name = columns.contains("name") ? "name" : "NULL::text"
                for id in result.removed.map(\.id) + result.notApplied.map(\.rowID) {
                    try await connection.execute(
                        """
                        INSERT INTO \(unescaped: MigrationBookkeeping.removedRows) (history_table, id, hash, created_at, name)
                        SELECT \(historyTable.description), id, hash, created_at::text, \(unescaped: name) FROM \(unescaped: historyTable.sql) WHERE id = \(id)
                        """)
                    try await connection.execute("DELETE FROM \(unescaped: historyTable.sql) WHERE id = \(id)")
                    try await connection.execute(
                        "DELETE FROM \(unescaped: MigrationBookkeeping.applied) WHERE history_table = \(historyTable.description) AND history_id = \(id)")
                }
            }
            result.applied = true
            return result
        }
    }
}
