import PostgresNIO
import TallyPostgres

extension PostgresClient {
    /// `withTransaction`, rethrowing the closure's own error: postgres-nio wraps it in
    /// `PostgresTransactionError`, which would hide a `CreditsError` from the HTTP layer.
    func transaction<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        do {
            return try await withTransaction(logger: LocalCluster.quietLogger) { connection in try await body(connection) }
        } catch let error as PostgresTransactionError {
            throw error.closureError ?? error
        }
    }
}
