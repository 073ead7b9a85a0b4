import Foundation
import PostgresNIO
import TallyPostgres

/// One change to an account made with an API key: a spend, a new hold, or the capture or release of an open
/// hold. Operations queue per account (`AccountBatcher`) and go to the database in batches, as one
/// `tally_apply` call (migration `0008_account_batches`) that decides them in arrival order.
enum AccountOperation: Sendable, Equatable {
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

    /// The operation as `tally_apply` reads it.
    var json: String {
        func string(_ text: String) -> String {
            String(decoding: (try? JSONEncoder().encode(text)) ?? Data("null".utf8), as: UTF8.self)
        }
        let key = self.key
        var fields = ["\"key_id\":\"\(key.keyID.uuidString)\"", "\"user_id\":\"\(key.userID.uuidString)\""]
        if let team = key.teamID { fields.append("\"team_id\":\"\(team.uuidString)\"") }
        switch self {
        case .consume(let request):
            fields += ["\"op\":\"consume\"", "\"amount\":\(request.amount)"]
            if let description = request.description { fields.append("\"description\":" + string(description)) }
            if let metadata = request.metadataJSON { fields.append("\"metadata\":" + metadata) }
        case .hold(_, let amount, let ttl, let description):
            fields += ["\"op\":\"hold\"", "\"amount\":\(amount)", "\"ttl\":\(ttl)"]
            if let description { fields.append("\"description\":" + string(description)) }
        case .capture(let hold, let amount, _):
            fields += ["\"op\":\"capture\"", "\"hold_id\":\"\(hold.uuidString)\""]
            if let amount { fields.append("\"amount\":\(amount)") }
        case .release(let hold, _):
            fields += ["\"op\":\"release\"", "\"hold_id\":\"\(hold.uuidString)\""]
        }
        return "{" + fields.joined(separator: ",") + "}"
    }
}

/// What `tally_apply` answered for one operation (see the function for the outcomes).
struct OperationOutcome: Sendable {
    var outcome: String
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
}

extension Ledger {
    /// Applies `operation`: queued behind its account's earlier operations and sent with them
    /// (`AccountBatcher`); alone inside the context's request transaction (an Idempotency-Key request), or
    /// while the batcher does not run (a one-shot command). An account that is new or has expiries due is
    /// settled first, in the same transaction as the operation.
    func apply(_ operation: AccountOperation, context: QueryContext) async throws -> OperationOutcome {
        let outcome = if context.transaction == nil, let batched = try await batcher.submit(operation) {
            batched
        } else {
            try await database.transaction(context) { connection in try await Self.apply([operation], on: connection)[0] }
        }
        guard outcome.outcome == "settle" else { return outcome }
        // now() is fixed within the transaction, so nothing is due again when the operation runs.
        return try await database.transaction(context) { connection in
            _ = try await lockAccount(of: operation.key.account, on: connection)
            return try await Self.apply([operation], on: connection)[0]
        }
    }

    /// Runs `tally_apply` for `operations`, in order, as one statement on `connection`.
    static func apply(_ operations: [AccountOperation], on connection: DatabaseConnection) async throws -> [OperationOutcome] {
        var outcomes = [OperationOutcome?](repeating: nil, count: operations.count)
        for (idx, outcome, transactionID, balance, held, available, limit, used, keyHeld, holdID, holdAmount, captured, expiresAt)
        in try await connection.run(ApplyOperations(operations: operations)) where outcomes.indices.contains(idx) {
            outcomes[idx] = OperationOutcome(
                outcome: outcome, transactionID: transactionID, balance: balance, held: held, available: available, keyLimit: limit,
                keyUsed: used, keyHeld: keyHeld, holdID: holdID, holdAmount: holdAmount, captured: captured, expiresAt: expiresAt)
        }
        return outcomes.map { $0 ?? OperationOutcome(outcome: "missing") }
    }

    /// The error for an outcome that is not `ok` and that every operation shares; nil for the others.
    /// `what`: "spend" or "hold".
    static func refusal(_ outcome: OperationOutcome, amount: Int64?, what: String) -> CreditsError? {
        switch outcome.outcome {
        case "revoked":
            return CreditsError(.unauthenticated, "the API key is unknown or revoked")
        case "insufficient-credits":
            return CreditsError(.insufficientCredits, "the account has \(outcome.available ?? 0) credits available; this \(what) needs \(amount ?? 0)")
        case "key-limit-exceeded":
            return keyLimitExceeded(limit: outcome.keyLimit ?? 0, used: outcome.keyUsed ?? 0, held: outcome.keyHeld ?? 0, amount: amount ?? 0, what: what)
        default:
            return nil
        }
    }

    /// For an outcome no operation expects.
    static func unexpected(_ outcome: OperationOutcome) -> CreditsError {
        CreditsError(.conflict, "the account changed while this request was being made (\(outcome.outcome)); retry it")
    }
}

/// One call of `tally_apply` with a batch of operations.
struct ApplyOperations: HotStatement {
    typealias Row = (Int, String, Int64?, Int64?, Int64?, Int64?, Int64?, Int64?, Int64?, UUID?, Int64?, Int64?, Date?)
    static let sql = """
        SELECT idx, outcome, transaction_id, balance, held, available, key_limit, key_used, key_held, hold_id, hold_amount, captured, expires_at
        FROM tally_apply($1::jsonb)
        """

    var operations: [AccountOperation]

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 1)
        bindings.append("[" + operations.map(\.json).joined(separator: ",") + "]")
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}
