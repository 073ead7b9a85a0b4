import Foundation
import Logging
import PostgresNIO
import Synchronization
import TallyPostgres

/// What a call into the credits store runs with, passed down from the caller (for a request, its context):
/// the logger its statements log to, which carries the request's id, and the transaction its work joins when
/// the request runs inside one.
public struct QueryContext: Sendable {
    public var logger: Logger
    /// The request's transaction (an `Idempotency-Key` request), or nil: work takes its own connection.
    public var transaction: RequestTransaction?

    public init(logger: Logger, transaction: RequestTransaction? = nil) {
        self.logger = logger
        self.transaction = transaction
    }
}

/// A request's database transaction: its effects and its stored answer commit together (`Idempotency`).
/// Work that joins it runs in a savepoint of its own, so a failure undoes only that work's writes.
public final class RequestTransaction: Sendable {
    let connection: PostgresConnection
    private let savepoints = Atomic<Int>(0)

    init(_ connection: PostgresConnection) {
        self.connection = connection
    }

    /// A savepoint name not used before in this transaction.
    func nextSavepoint() -> String {
        "tally_step_\(savepoints.add(1, ordering: .relaxed).newValue)"
    }
}

/// A connection and the logger its statements log to. Statements are interpolated queries: every value is
/// bound, never spliced into the SQL.
public struct DatabaseConnection: Sendable {
    public let underlying: PostgresConnection
    public let logger: Logger

    public init(_ underlying: PostgresConnection, logger: Logger) {
        self.underlying = underlying
        self.logger = logger
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

    /// BEGIN, `body`, COMMIT; ROLLBACK and rethrow (the error as thrown) when `body` throws.
    func transaction<T>(_ body: () async throws -> T) async throws -> T {
        try await execute("BEGIN")
        do {
            let result = try await body()
            try await execute("COMMIT")
            return result
        } catch {
            await rollBack(after: error)
            throw error
        }
    }

    /// `PostgresConnection.rollBack(after:toSavepoint:)`.
    func rollBack(after error: any Error, toSavepoint savepoint: String? = nil) async {
        await underlying.rollBack(after: error, toSavepoint: savepoint, logger: logger)
    }
}
