import Foundation
import Logging
import PostgresNIO
import TallyPostgres

/// One change to an account made with an API key: a spend, a new hold, or the capture or release of an open
/// hold. Operations queue per account (`AccountBatcher`) and go to the database in batches, as one
/// `tally_apply` call, which decides them in arrival order (migration `0020_account_rules`; the rules are
/// written there, not here).
enum AccountOperation: Sendable, Equatable, Encodable {
    case consume(ConsumeRequest)
    case hold(key: APIKeyPrincipal, amount: Int64, ttl: Int, description: String?)
    case capture(hold: UUID, amount: Int64?, key: APIKeyPrincipal)
    case release(hold: UUID, key: APIKeyPrincipal)

    /// The key the operation is made with; its account is the one the operation changes.
    var key: APIKeyPrincipal {
        switch self {
        case .consume(let request): request.apiKey
        case .hold(let key, _, _, _), .capture(_, _, let key), .release(_, let key): key
        }
    }

    enum CodingKeys: String, CodingKey {
        case op, amount, ttl, description, metadata, idempotency
        case keyID = "key_id", userID = "user_id", teamID = "team_id", holdID = "hold_id"
    }

    /// The operation as `tally_apply` reads it: `{op, key_id, user_id, team_id, …}`.
    func encode(to encoder: any Encoder) throws {
        var fields = encoder.container(keyedBy: CodingKeys.self)
        try encode(into: &fields)
    }

    func encode(into fields: inout KeyedEncodingContainer<CodingKeys>) throws {
        try fields.encode(key.keyID, forKey: .keyID)
        try fields.encode(key.userID, forKey: .userID)
        try fields.encodeIfPresent(key.teamID, forKey: .teamID)
        switch self {
        case .consume(let request):
            try fields.encode("consume", forKey: .op)
            try fields.encode(request.amount, forKey: .amount)
            try fields.encodeIfPresent(request.description, forKey: .description)
            try fields.encodeIfPresent(request.metadata, forKey: .metadata)
        case .hold(_, let amount, let ttl, let description):
            try fields.encode("hold", forKey: .op)
            try fields.encode(amount, forKey: .amount)
            try fields.encode(ttl, forKey: .ttl)
            try fields.encodeIfPresent(description, forKey: .description)
        case .capture(let hold, let amount, _):
            try fields.encode("capture", forKey: .op)
            try fields.encode(hold, forKey: .holdID)
            try fields.encodeIfPresent(amount, forKey: .amount)
        case .release(let hold, _):
            try fields.encode("release", forKey: .op)
            try fields.encode(hold, forKey: .holdID)
        }
    }
}

/// An operation as it goes in a batch: with its request's `Idempotency-Key`, if it has one.
struct BatchedOperation: Sendable, Encodable {
    var operation: AccountOperation
    var idempotency: IdempotencyClaim?

    func encode(to encoder: any Encoder) throws {
        var fields = encoder.container(keyedBy: AccountOperation.CodingKeys.self)
        try operation.encode(into: &fields)
        try fields.encodeIfPresent(idempotency, forKey: .idempotency)
    }
}

/// What `tally_apply` decided for one operation.
struct OperationOutcome: Sendable {
    /// The function's outcomes (see its comment in `0020_account_rules`).
    enum Kind: String, Sendable {
        case ok
        case revoked
        case insufficientCredits = "insufficient-credits"
        case keyLimitExceeded = "key-limit-exceeded"
        /// Decided in the next batch: an earlier operation in this one changed what is due on the account.
        case again
        case holdNotFound = "hold-not-found"
        case holdCaptured = "hold-captured"
        case holdReleased = "hold-released"
        case holdExpired = "hold-expired"
        case captureExceedsHold = "capture-exceeds-hold"
        /// The operation's Idempotency-Key is another request's.
        case idempotencyKeyReused = "idempotency-key-reused"
        /// A request with the operation's Idempotency-Key runs now.
        case idempotencyInProgress = "idempotency-in-progress"
        /// The key has a whole answer kept (by a request that ran in its own transaction).
        case idempotencyAnswerKept = "idempotency-answer-kept"
    }

    var kind: Kind
    var transactionID: Int64?
    var balance: Int64?
    var held: Int64?
    var available: Int64?
    var keyLimit: Int64?
    var keyUsed: Int64?
    var keyHeld: Int64?
    var holdID: UUID?
    var holdAmount: Int64?
    var captured: Int64?
    var expiresAt: Date?
    /// The outcome kept for the operation's Idempotency-Key, answered again.
    var replayed = false
}

extension Ledger {
    /// Applies `operation`: queued behind its account's earlier operations and sent with them
    /// (`AccountBatcher`); alone inside the context's request transaction (an Idempotency-Key request), or
    /// while the batcher does not run (a one-shot command).
    /// With an `Idempotency-Key` claim, the outcome may be the one kept for it (and the claim notes it).
    func apply(_ operation: AccountOperation, context: QueryContext) async throws -> OperationOutcome {
        // Inside a request transaction, that transaction keeps the answer.
        let claim = context.transaction == nil ? context.idempotency : nil
        let batched = BatchedOperation(operation: operation, idempotency: claim)
        while true {
            let outcome = if context.transaction == nil, let outcome = try await batcher.submit(batched) {
                outcome
            } else {
                try await database.transaction(context) { connection in try await Self.apply([batched], on: connection)[0] }
            }
            switch outcome.kind {
            case .again:
                // Only an operation behind another in its batch is told to go again, so alone it is decided.
                continue
            case .idempotencyInProgress:
                throw CreditsError(.idempotencyInProgress, "a request with this Idempotency-Key is still running; retry after it finishes")
            case .idempotencyKeyReused:
                throw CreditsError(.idempotencyKeyReused, "this Idempotency-Key was used for a different request; use a new key for a new request")
            case .idempotencyAnswerKept:
                guard let claim else { throw Self.unexpected(outcome) }
                throw IdempotencyAnswerKept(claim: claim)
            default:
                if outcome.replayed { claim?.noteReplayed() }
                return outcome
            }
        }
    }

    /// Sends a batch for the batcher: as one statement, or, when the server refused that statement (the whole
    /// batch rolled back), each operation alone, so that only the one at fault fails. A connection lost
    /// mid-statement is not retried: the batch may have committed.
    static func send(_ operations: [BatchedOperation], to database: Database, logger: Logger) async throws -> [Result<OperationOutcome, any Error>] {
        do {
            return try await database.leased(logger: logger) { connection in try await apply(operations, on: connection) }.map { .success($0) }
        } catch let error as PSQLError where error.serverInfo != nil && operations.count > 1 && !DatabaseFailure.isConnectionLoss(error) {
            var results: [Result<OperationOutcome, any Error>] = []
            for operation in operations {
                do {
                    results.append(.success(try await database.leased(logger: logger) { connection in try await apply([operation], on: connection)[0] }))
                } catch {
                    results.append(.failure(error))
                }
            }
            return results
        }
    }

    /// Runs `tally_apply` for `operations` (none with an Idempotency-Key), in order, as one statement.
    static func apply(_ operations: [AccountOperation], on connection: DatabaseConnection) async throws -> [OperationOutcome] {
        try await apply(operations.map { BatchedOperation(operation: $0) }, on: connection)
    }

    /// Runs `tally_apply` for `operations`, in order, as one statement on `connection`.
    static func apply(_ operations: [BatchedOperation], on connection: DatabaseConnection) async throws -> [OperationOutcome] {
        var outcomes = [OperationOutcome?](repeating: nil, count: operations.count)
        for (index, outcome) in try await connection.run(ApplyOperations(operations: operations)) where outcomes.indices.contains(index) {
            outcomes[index] = outcome
        }
        return try outcomes.map { outcome in
            guard let outcome else { throw CreditsError(.conflict, "the database answered no outcome for an operation of the batch; retry it") }
            return outcome
        }
    }

    /// The error for an outcome that refuses a spend or a new hold; `what`: "spend" or "hold".
    static func refusal(_ outcome: OperationOutcome, amount: Int64?, what: String) -> CreditsError {
        switch outcome.kind {
        case .revoked:
            CreditsError(.unauthenticated, "the API key is unknown or revoked")
        case .insufficientCredits:
            CreditsError(.insufficientCredits, "the account has \(outcome.available ?? 0) credits available; this \(what) needs \(amount ?? 0)")
        case .keyLimitExceeded:
            keyLimitExceeded(limit: outcome.keyLimit ?? 0, used: outcome.keyUsed ?? 0, held: outcome.keyHeld ?? 0, amount: amount ?? 0, what: what)
        default:
            unexpected(outcome)
        }
    }

    static func keyLimitExceeded(limit: Int64, used: Int64, held: Int64, amount: Int64, what: String) -> CreditsError {
        let reserved = held > 0 ? " (\(held) of it reserved by open holds)" : ""
        return CreditsError(
            .keyLimitExceeded,
            "this API key may spend \(max(0, limit - used - held)) more credits (limit \(limit), used \(used)\(reserved)); this \(what) needs \(amount)")
    }

    /// For an outcome the operation does not expect.
    static func unexpected(_ outcome: OperationOutcome) -> CreditsError {
        CreditsError(.conflict, "the account changed while this request was being made (\(outcome.kind.rawValue)); retry it")
    }
}

/// One call of `tally_apply` with a batch of operations; each row the outcome of the operation at its index.
struct ApplyOperations: HotStatement {
    typealias Row = (Int, OperationOutcome)
    static let sql = """
        SELECT idx, outcome, transaction_id, balance, held, available, key_limit, key_used, key_held, hold_id, hold_amount, captured, expires_at, replayed
        FROM tally_apply($1::jsonb)
        """

    var operations: [BatchedOperation]

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 1)
        bindings.append(String(decoding: try JSONEncoder().encode(operations), as: UTF8.self))
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row {
        let (index, kind, transactionID, balance, held, available, keyLimit, keyUsed, keyHeld, holdID, holdAmount, captured, expiresAt, replayed) =
            try row.decode((Int, String, Int64?, Int64?, Int64?, Int64?, Int64?, Int64?, Int64?, UUID?, Int64?, Int64?, Date?, Bool).self)
        guard let kind = OperationOutcome.Kind(rawValue: kind) else {
            throw CreditsError(.conflict, "tally_apply answered an outcome this build does not know (\(kind)); is the schema newer than the server? (tally migrate status)")
        }
        return (index, OperationOutcome(
            kind: kind, transactionID: transactionID, balance: balance, held: held, available: available, keyLimit: keyLimit,
            keyUsed: keyUsed, keyHeld: keyHeld, holdID: holdID, holdAmount: holdAmount, captured: captured, expiresAt: expiresAt,
            replayed: replayed))
    }
}
