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
    /// The request's `Idempotency-Key`, for a request that is one account operation (`IdempotencyClaim`).
    public var idempotency: IdempotencyClaim?

    public init(logger: Logger, transaction: RequestTransaction? = nil, idempotency: IdempotencyClaim? = nil) {
        self.logger = logger
        self.transaction = transaction
        self.idempotency = idempotency
    }
}

/// A request's database transaction: its effects and its stored answer commit together (the server's
/// `Idempotency` store opens it). Work that joins it runs in a savepoint of its own, so a failure undoes only
/// that work's writes.
public final class RequestTransaction: Sendable {
    let connection: PostgresConnection
    /// The leasing database's prepared-statement setting.
    let prepared: PreparedStatements?
    private let savepoints = Atomic<Int>(0)

    public init(_ connection: DatabaseConnection) {
        self.connection = connection.underlying
        self.prepared = connection.prepared
    }

    /// A savepoint name not used before in this transaction.
    func nextSavepoint() -> String {
        "tally_step_\(savepoints.add(1, ordering: .relaxed).newValue)"
    }
}
