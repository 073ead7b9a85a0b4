import PostgresNIO
import TallyPostgres

/// The database transaction a request's work joins, when the request runs inside one (an `Idempotency-Key`
/// request: its effects and its stored answer commit together, or not at all).
public enum RequestTransaction {
    @TaskLocal public static var connection: PostgresConnection?
}

extension PostgresClient {
    /// `withTransaction`, rethrowing the closure's own error: postgres-nio wraps it in
    /// `PostgresTransactionError`, which would hide a `CreditsError` from the HTTP layer.
    /// Inside a `RequestTransaction` it runs in a savepoint of that transaction instead, so a failure undoes
    /// only its own writes.
    func transaction<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        if let connection = RequestTransaction.connection {
            return try await Self.inSavepoint(connection, body)
        }
        do {
            return try await withTransaction(logger: LocalCluster.quietLogger) { connection in try await body(connection) }
        } catch let error as PostgresTransactionError {
            throw error.closureError ?? error
        }
    }

    /// A pooled connection, or the request transaction's (in a savepoint, so a failed statement does not
    /// abort the request's transaction).
    func connection<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        if let connection = RequestTransaction.connection {
            return try await Self.inSavepoint(connection, body)
        }
        return try await withConnection { connection in try await body(connection) }
    }

    private static func inSavepoint<T: Sendable>(_ connection: PostgresConnection, _ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await connection.execute("SAVEPOINT tally_step")
        do {
            let result = try await body(connection)
            try await connection.execute("RELEASE SAVEPOINT tally_step")
            return result
        } catch {
            try? await connection.execute("ROLLBACK TO SAVEPOINT tally_step")
            throw error
        }
    }
}
