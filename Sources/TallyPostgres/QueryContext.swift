import Foundation
import Logging
import PostgresNIO
import Synchronization

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

/// An `Idempotency-Key` request that is one account operation: the operation carries the claim into its batch
/// (TallyCredits' `tally_apply`), which keeps what it decides for the key, or answers what it kept before.
public final class IdempotencyClaim: Sendable, Encodable {
    public let scope: String
    public let key: String
    public let method: String
    public let path: String
    public let requestHash: String
    public let retentionSeconds: Double
    private let answeredAgain = Atomic<Bool>(false)

    public init(scope: String, key: String, method: String, path: String, requestHash: String, retentionSeconds: Double) {
        self.scope = scope
        self.key = key
        self.method = method
        self.path = path
        self.requestHash = requestHash
        self.retentionSeconds = retentionSeconds
    }

    /// Whether the operation's answer is the one kept for the key (`Idempotent-Replayed: true`).
    public var replayed: Bool { answeredAgain.load(ordering: .relaxed) }

    public func noteReplayed() { answeredAgain.store(true, ordering: .relaxed) }

    enum CodingKeys: String, CodingKey {
        case scope, key, method, path, hash, retention
    }

    /// As `tally_apply` reads it: {scope, key, hash, method, path, retention}.
    public func encode(to encoder: any Encoder) throws {
        var fields = encoder.container(keyedBy: CodingKeys.self)
        try fields.encode(scope, forKey: .scope)
        try fields.encode(key, forKey: .key)
        try fields.encode(requestHash, forKey: .hash)
        try fields.encode(method, forKey: .method)
        try fields.encode(path, forKey: .path)
        try fields.encode(retentionSeconds, forKey: .retention)
    }
}
