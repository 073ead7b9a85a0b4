import Logging
import PostgresNIO

/// A connection and the logger its statements log to. Statements are interpolated queries: every value is
/// bound, never spliced into the SQL.
public struct DatabaseConnection: Sendable {
    public let underlying: PostgresConnection
    public let logger: Logger
    /// Whether `run` prepares hot statements (nil: never).
    public let prepared: PreparedStatements?
    /// Inside a transaction (or a savepoint of one): a failed statement has aborted it, so nothing is retried.
    public let inTransaction: Bool

    public init(_ underlying: PostgresConnection, logger: Logger, prepared: PreparedStatements? = nil, inTransaction: Bool = false) {
        self.underlying = underlying
        self.logger = logger
        self.prepared = prepared
        self.inTransaction = inTransaction
    }

    /// This connection, known to be inside a transaction.
    public var transactional: DatabaseConnection {
        DatabaseConnection(underlying, logger: logger, prepared: prepared, inTransaction: true)
    }

    /// Runs `query`; its rows.
    public func query(_ query: PostgresQuery) async throws -> PostgresRowSequence {
        guard !underlying.isClosed else { throw ConnectionClosed() }
        return try await underlying.query(query, logger: logger)
    }

    /// Runs `query` and reads past its rows.
    public func execute(_ query: PostgresQuery) async throws {
        try await underlying.execute(query, logger: logger)
    }

    /// BEGIN, `body`, COMMIT; ROLLBACK and rethrow when `body` throws.
    public func transaction<T>(_ body: () async throws -> T) async throws -> T {
        try await transaction { (_: DatabaseConnection) in try await body() }
    }

    /// BEGIN, `body` (with this connection, marked `inTransaction`), COMMIT; ROLLBACK and rethrow (the error
    /// as thrown) when `body` throws.
    public func transaction<T>(_ body: (DatabaseConnection) async throws -> T) async throws -> T {
        try await execute("BEGIN")
        do {
            let result = try await body(transactional)
            try await execute("COMMIT")
            return result
        } catch {
            await rollBack(after: error)
            throw error
        }
    }

    /// `PostgresConnection.rollBack(after:toSavepoint:)`.
    public func rollBack(after error: any Error, toSavepoint savepoint: String? = nil) async {
        await underlying.rollBack(after: error, toSavepoint: savepoint, logger: logger)
    }
}
