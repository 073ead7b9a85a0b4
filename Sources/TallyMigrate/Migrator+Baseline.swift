import Foundation
import PostgresNIO
import TallyPostgres

extension Migrator {
    public struct BaselineResult: Sendable, Codable {
        public var marked: [String]
        public var alreadyApplied: [String]
        /// Objects the migrations create that the database lacks (non-empty only with `force`).
        public var missing: [String]
    }

    /// Marks every migration up to `through` applied without running it, after checking that the objects
    /// those migrations create exist (by applying them to a scratch database and comparing).
    public func baseline(through target: String, force: Bool = false) async throws -> BaselineResult {
        let last = try folder.migration(tag: target).index
        let migrations = folder.migrations.filter { $0.index <= last }
        let missing = try await SchemaObjects.missing(applying: migrations, to: database, excluding: historyTable, progress: progress)
        if !missing.isEmpty && !force {
            throw MigrateError(
                .baselineRefused,
                (["baseline refused: the migrations through \(target) create objects this database does not have:"]
                    + missing.map { "  - \($0)" }
                    + ["Apply them with `tally migrate up`, or mark them anyway with --force if you know better."]).joined(separator: "\n"))
        }
        return try await withRunnerLock { connection, _ in
            let columns = try await historyTable.prepare(for: folder, on: connection, progress: progress)
            let before = try await report(on: connection)
            var marked: [String] = []
            var already: [String] = []
            try await connection.transaction {
                for migration in migrations {
                    guard let entry = before.entries.first(where: { $0.tag == migration.tag }) else { continue }
                    switch entry.state {
                    case .pending:
                        try await historyTable.insert(migration, baseline: true, columns: columns, on: connection)
                        marked.append(migration.tag)
                    case .applied, .baseline:
                        already.append(migration.tag)
                    case .changed:
                        throw MigrateError(.historyProblem, "\(migration.tag) already has a history row whose hash differs from the file; run `tally migrate repair` first")
                    }
                }
            }
            return BaselineResult(marked: marked, alreadyApplied: already, missing: missing)
        }
    }
}
