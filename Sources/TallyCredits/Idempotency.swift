import Foundation
import Logging
import PostgresNIO
import Synchronization
import TallyPostgres

/// An HTTP answer as kept for replay.
public struct StoredResponse: Sendable, Equatable {
    public var status: Int
    public var contentType: String?
    public var body: [UInt8]

    public init(status: Int, contentType: String?, body: [UInt8]) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }
}

/// `Idempotency-Key`: a retried request gets the first request's answer instead of running twice, in one of two
/// ways, both committing the answer with the request's effects (a crash in between leaves neither, and the
/// retry runs afresh):
///
/// - `perform`: the request runs inside one database transaction that also stores its whole answer
///   (`RequestTransaction`, handed to the work in its `QueryContext`). For routes that make several changes.
/// - `IdempotencyClaim`: a request that is one account operation (a spend, a hold, its capture or release) goes
///   in its account's batch like any other, carrying the claim; `tally_apply` keeps what it decided for the key
///   in the batch's transaction and answers it again on a retry (migration `0020_account_rules`).
///
/// A transaction-scoped advisory lock on (scope, key), the same in both, marks a request in flight; a second
/// request with the same key meanwhile is refused at once. Keys are scoped to the credential that sent them and
/// kept for `retention` (24 hours by default); `purgeExpired` removes older ones.
public struct Idempotency: Sendable {
    public enum Outcome: Sendable, Equatable {
        case fresh(StoredResponse)
        case replayed(StoredResponse)
    }

    public let database: Database
    public var retention: Duration

    public init(client: PostgresClient, retention: Duration = .seconds(24 * 3600)) {
        self.init(database: Database(client), retention: retention)
    }

    public init(database: Database, retention: Duration = .seconds(24 * 3600)) {
        self.database = database
        self.retention = retention
    }

    private var retentionSeconds: Double { Double(retention.components.seconds) }

    /// Whether `key` is usable as an idempotency key: 1 to 255 visible ASCII characters.
    public static func validate(_ key: String) throws {
        guard (1...255).contains(key.utf8.count), key.utf8.allSatisfy({ (0x21...0x7e).contains($0) }) else {
            throw CreditsError(.invalidInput, "Idempotency-Key must be 1 to 255 visible ASCII characters, such as a UUID")
        }
    }

    /// Runs `operation` once per (scope, key). A replay needs the same method, path and request body
    /// (`requestHash`); anything else with the key is idempotency-key-reused. Answers with a 5xx status, or
    /// that `keep` refuses, are not stored and their effects are rolled back, so the client may retry.
    /// What is stored (and replayed) is `storing(answer)`: the caller removes secrets there.
    public func perform(
        scope: String, key: String, method: String, path: String, requestHash: String,
        keep: @Sendable (StoredResponse) -> Bool = { $0.status < 500 },
        storing: @Sendable (StoredResponse) -> StoredResponse = { $0 },
        logger: Logger,
        operation: (RequestTransaction) async throws -> StoredResponse
    ) async throws -> Outcome {
        try Self.validate(key)
        return try await database.leased(logger: logger) { connection in
            try await connection.execute("BEGIN")
            do {
                var locked = false
                for try await value in try await connection.query(
                    "SELECT pg_try_advisory_xact_lock(hashtextextended(\(scope) || ':' || \(key), 7365))"
                ).decode(Bool.self) { locked = value }
                guard locked else {
                    throw CreditsError(.idempotencyInProgress, "a request with this Idempotency-Key is still running; retry after it finishes")
                }
                if let kept = try await keptAnswer(scope: scope, key: key, method: method, path: path, requestHash: requestHash, on: connection) {
                    try await connection.execute("ROLLBACK")
                    return .replayed(kept)
                }
                let response = try await operation(RequestTransaction(connection))
                guard keep(response) else {
                    try await connection.execute("ROLLBACK")
                    return .fresh(response)
                }
                let kept = storing(response)
                try await connection.execute("""
                    INSERT INTO idempotency_keys (scope, key, request_hash, method, path, status_code, content_type, response_body)
                    VALUES (\(scope), \(key), \(requestHash), \(method), \(path), \(kept.status), \(kept.contentType), \(Data(kept.body)))
                    ON CONFLICT (scope, key) DO UPDATE SET request_hash = excluded.request_hash, method = excluded.method, path = excluded.path,
                        status_code = excluded.status_code, content_type = excluded.content_type, response_body = excluded.response_body, created_at = now()
                    """)
                try await connection.execute("COMMIT")
                return .fresh(response)
            } catch {
                await connection.rollBack(after: error)
                throw error
            }
        }
    }

    /// The whole answer kept for (scope, key), if any; idempotency-key-reused when it was kept for another request
    /// (or an account operation kept its outcome for it, and this request is not that operation).
    func keptAnswer(
        scope: String, key: String, method: String, path: String, requestHash: String, on connection: DatabaseConnection
    ) async throws -> StoredResponse? {
        var stored: (String, String, String, Int?, String?, Data?)?
        for try await row in try await connection.query(
            """
            SELECT request_hash, method, path, status_code, content_type, response_body FROM idempotency_keys
            WHERE scope = \(scope) AND key = \(key) AND created_at > now() - make_interval(secs => \(retentionSeconds))
            """
        ).decode((String, String, String, Int?, String?, Data?).self) { stored = row }
        guard let (hash, storedMethod, storedPath, status, contentType, body) = stored else { return nil }
        guard hash == requestHash, storedMethod == method, storedPath == path, let status, let body else {
            throw CreditsError(.idempotencyKeyReused, "this Idempotency-Key was used for a different request (\(storedMethod) \(storedPath) with another body); use a new key for a new request")
        }
        return StoredResponse(status: status, contentType: contentType, body: [UInt8](body))
    }

    /// The whole answer kept for `claim`'s key (an account operation found one: `IdempotencyAnswerKept`).
    public func keptAnswer(for claim: IdempotencyClaim, logger: Logger) async throws -> StoredResponse {
        try await database.leased(logger: logger) { connection in
            guard let kept = try await keptAnswer(
                scope: claim.scope, key: claim.key, method: claim.method, path: claim.path, requestHash: claim.requestHash, on: connection)
            else { throw CreditsError(.idempotencyInProgress, "a request with this Idempotency-Key is still running; retry after it finishes") }
            return kept
        }
    }

    /// A claim on `key` for a request that is one account operation (see the type's comment).
    public func claim(scope: String, key: String, method: String, path: String, requestHash: String) throws -> IdempotencyClaim {
        try Self.validate(key)
        return IdempotencyClaim(scope: scope, key: key, method: method, path: path, requestHash: requestHash, retentionSeconds: retentionSeconds)
    }

    /// Deletes keys older than the retention; returns how many.
    @discardableResult
    public func purgeExpired(context: QueryContext) async throws -> Int {
        try await database.connection(context) { connection in
            var deleted = 0
            for try await _ in try await connection.query(
                "DELETE FROM idempotency_keys WHERE created_at <= now() - make_interval(secs => \(retentionSeconds)) RETURNING 1"
            ) { deleted += 1 }
            return deleted
        }
    }
}

/// An account operation's Idempotency-Key has a whole answer kept (by `Idempotency.perform`): the caller
/// answers it (`Idempotency.keptAnswer(for:)`).
public struct IdempotencyAnswerKept: Error {
    public let claim: IdempotencyClaim
}
