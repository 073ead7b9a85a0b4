import Foundation
import PostgresNIO
import TallyPostgres

extension Migrator {
    /// Runs `body` holding the history table's advisory lock on one connection.
    func withRunnerLock<T: Sendable>(_ body: (DatabaseConnection) async throws -> T) async throws -> T {
        try await withSingleConnection(database, logger: logger) { connection in
            let key = historyTable.lockKey
            let clock = ContinuousClock()
            let deadline = clock.now + options.runnerWait
            var told = false
            while true {
                var got = false
                for try await ok in try await connection.query("SELECT pg_try_advisory_lock(\(key))").decode(Bool.self) {
                    got = ok
                }
                if got { break }
                if !told {
                    progress("Another runner is migrating \(historyTable); waiting for it to finish.")
                    told = true
                }
                guard clock.now < deadline else {
                    throw MigrateError(.lockTimeout, "another runner held the migration lock on \(historyTable) for over \(options.runnerWait); check pg_stat_activity for it and retry")
                }
                try await Task.sleep(for: .milliseconds(200))
            }
            do {
                let result = try await body(connection)
                try? await connection.execute("SELECT pg_advisory_unlock(\(key))")
                return result
            } catch {
                try? await connection.execute("SELECT pg_advisory_unlock(\(key))")
                throw error
            }
        }
    }

}
