import Foundation
import PostgresNIO
import TallyPostgres

extension Migrator {
    public struct DownResult: Sendable, Codable {
        public var reverted: [String]
        public var planned: [String]
    }

    /// Runs down files in reverse for applied migrations after `target` (or only the newest one when nil),
    /// removing their history rows in the same transaction. Refuses when one on the way has no down file.
    public func down(to target: String? = nil, dryRun: Bool = false) async throws -> DownResult {
        let keepThrough = try target.map { try folder.migration(tag: $0).index }
        return try await withRunnerLock { connection, _ in
            let report = try await report(on: connection)
            guard report.isConsistent else { throw Self.inconsistent(report, action: "reverting") }
            let applied = report.entries.filter { $0.state == .applied || $0.state == .baseline }
            var toRevert: [MigrationReport.Entry]
            if let keepThrough {
                toRevert = applied.filter { $0.index > keepThrough }
            } else {
                toRevert = applied.last.map { [$0] } ?? []
            }
            toRevert.reverse()
            let missingDown = toRevert.filter { !$0.hasDownFile }.map(\.tag)
            guard missingDown.isEmpty else {
                throw MigrateError(
                    .noDownFile,
                    "cannot revert: \(missingDown.joined(separator: ", ")) has no down file (TAG.down.sql). Nothing was changed. Write one, or restore from a backup.")
            }
            if dryRun { return DownResult(reverted: [], planned: toRevert.map(\.tag)) }
            var reverted: [String] = []
            for entry in toRevert {
                guard let migration = folder.migrations.first(where: { $0.tag == entry.tag }), let down = migration.downSQL else { continue }
                progress("Reverting \(entry.tag)")
                let file = migration.file.replacingOccurrences(of: ".sql", with: ".down.sql")
                let statements = try SQLStatement.parse(down, startLine: 1, file: file)
                var current = 0
                do {
                    try await connection.transaction {
                        try await connection.run("SET LOCAL lock_timeout = \(Self.milliseconds(options.lockTimeout))")
                        for (n, statement) in statements.enumerated() {
                            current = n + 1
                            try await connection.execute(PostgresQuery(unsafeSQL: statement.text))
                        }
                        current = 0
                        try await connection.execute(
                            "DELETE FROM \(unescaped: historyTable.sql) WHERE id = \(entry.rowID ?? -1)")
                        if try await MigrationBookkeeping.exists(on: connection) {
                            try await connection.execute(
                                "DELETE FROM \(unescaped: MigrationBookkeeping.applied) WHERE history_table = \(historyTable.description) AND history_id = \(entry.rowID ?? -1)")
                        }
                    }
                } catch {
                    let at = current > 0 ? "statement \(current) of \(statements.count) (\(file):\(statements[current - 1].line))" : "removing its history row"
                    throw MigrateError(
                        .migrationFailed,
                        "reverting \(entry.tag) failed at \(at): \(describe(error)). Nothing of it was reverted (rolled back)\(reverted.isEmpty ? "" : "; already reverted: \(reverted.joined(separator: ", "))").")
                }
                reverted.append(entry.tag)
            }
            return DownResult(reverted: reverted, planned: [])
        }
    }
}
