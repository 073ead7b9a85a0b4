import Foundation
import PostgresNIO
import TallyPostgres

/// One spend, as narrow as the consume path needs: which key, how much, and what to write in the ledger.
/// Kept small so that concurrent spends can later be grouped into one transaction (group commit) without
/// the HTTP layer changing.
public struct ConsumeRequest: Sendable, Equatable {
    public var apiKey: APIKeyPrincipal
    public var amount: Int64
    public var description: String?
    /// A JSON object, already serialised.
    public var metadataJSON: String?

    public init(apiKey: APIKeyPrincipal, amount: Int64, description: String? = nil, metadataJSON: String? = nil) {
        self.apiKey = apiKey
        self.amount = amount
        self.description = description
        self.metadataJSON = metadataJSON
    }
}

public struct ConsumeResult: Sendable, Codable, Equatable {
    public var transactionID: Int64
    public var balance: Int64
    public var available: Int64

    enum CodingKeys: String, CodingKey {
        case balance, available
        case transactionID = "transaction_id"
    }
}

/// What `tally_consume` answered for one spend.
struct SpendOutcome: Sendable {
    var outcome: String
    var transactionID: Int64?
    var balance: Int64?
    var available: Int64?
    var keyLimit: Int64?
    var keyUsed: Int64?
    var keyHeld: Int64?
}

extension ConsumeRequest {
    /// The spend as `tally_consume` reads it.
    var json: String {
        func string(_ text: String) -> String {
            String(decoding: (try? JSONEncoder().encode(text)) ?? Data("null".utf8), as: UTF8.self)
        }
        var fields = [
            "\"key_id\":\"\(apiKey.keyID.uuidString)\"", "\"user_id\":\"\(apiKey.userID.uuidString)\"", "\"amount\":\(amount)",
        ]
        if let team = apiKey.teamID { fields.append("\"team_id\":\"\(team.uuidString)\"") }
        if let description { fields.append("\"description\":" + string(description)) }
        if let metadataJSON { fields.append("\"metadata\":" + metadataJSON) }
        return "{" + fields.joined(separator: ",") + "}"
    }
}

extension Ledger {
    /// Spends `amount` from the key's account: the account can never go negative (nor below what holds
    /// reserve), the key never spends past its `credit_limit`, grants burn by priority, then soonest expiry,
    /// then age, and the spend is committed in the ledger when this returns. When the account or the key
    /// cannot cover it, nothing is written.
    ///
    /// Concurrent spends are grouped: they queue per account lane and each lane sends what has queued as one
    /// `tally_consume` statement, one round trip and one commit for the batch (see `ConsumeBatcher`).
    /// Inside a `RequestTransaction` (an Idempotency-Key request) the spend runs alone in that transaction; so
    /// it does while the ledger does not run as a service (the lanes are its tasks).
    public func consume(_ request: ConsumeRequest, context: QueryContext) async throws -> ConsumeResult {
        guard request.amount > 0 else { throw CreditsError(.invalidInput, "amount must be a positive integer") }
        // Alone inside the request's transaction, or when the batcher's lanes do not run (a one-shot command).
        var outcome = if context.transaction == nil, let batched = try await batcher.submit(request) {
            batched
        } else {
            try await database.transaction(context) { connection in try await Self.spend([request], on: connection)[0] }
        }
        if outcome.outcome == "settle" {
            // A new account, or expiries due: settle and spend in one transaction. now() is fixed within it, so
            // nothing is due again when the spend runs.
            outcome = try await database.transaction(context) { connection in
                _ = try await lockAccount(of: request.apiKey.account, on: connection)
                return try await Self.spend([request], on: connection)[0]
            }
        }
        switch outcome.outcome {
        case "ok":
            guard let transactionID = outcome.transactionID, let balance = outcome.balance, let available = outcome.available else { break }
            return ConsumeResult(transactionID: transactionID, balance: balance, available: available)
        case "insufficient-credits":
            throw CreditsError(.insufficientCredits, "the account has \(outcome.available ?? 0) credits available; this spend needs \(request.amount)")
        case "revoked":
            throw CreditsError(.unauthenticated, "the API key is unknown or revoked")
        case "key-limit-exceeded":
            throw Self.keyLimitExceeded(limit: outcome.keyLimit ?? 0, used: outcome.keyUsed ?? 0, held: outcome.keyHeld ?? 0, amount: request.amount)
        default:
            break
        }
        throw CreditsError(.conflict, "the account changed while this spend was being made (\(outcome.outcome)); retry it")
    }

    /// Runs `tally_consume` for `requests`, in order, as one statement on `connection`.
    static func spend(_ requests: [ConsumeRequest], on connection: DatabaseConnection) async throws -> [SpendOutcome] {
        let payload = "[" + requests.map(\.json).joined(separator: ",") + "]"
        var outcomes = [SpendOutcome?](repeating: nil, count: requests.count)
        for try await (idx, outcome, transactionID, balance, available, limit, used, held) in try await connection.query(
            "SELECT idx, outcome, transaction_id, balance, available, key_limit, key_used, key_held FROM tally_consume(\(payload)::jsonb)"
        ).decode((Int, String, Int64?, Int64?, Int64?, Int64?, Int64?, Int64?).self) where outcomes.indices.contains(idx) {
            outcomes[idx] = SpendOutcome(
                outcome: outcome, transactionID: transactionID, balance: balance, available: available, keyLimit: limit, keyUsed: used, keyHeld: held)
        }
        return outcomes.map { $0 ?? SpendOutcome(outcome: "missing") }
    }

    static func keyLimitExceeded(limit: Int64, used: Int64, held: Int64, amount: Int64) -> CreditsError {
        let reserved = held > 0 ? " (\(held) of it reserved by open holds)" : ""
        return CreditsError(
            .keyLimitExceeded,
            "this API key may spend \(max(0, limit - used - held)) more credits (limit \(limit), used \(used)\(reserved)); this request needs \(amount)")
    }

    /// Locks the key's allowance row and refuses when `amount` more would take what it has spent plus what its
    /// open holds reserve past its `credit_limit`.
    func checkKeyAllowance(_ key: APIKeyPrincipal, amount: Int64, on connection: DatabaseConnection) async throws {
        var limit: Int64?
        var used: Int64 = 0
        var held: Int64 = 0
        for try await (l, u, h) in try await connection.query(
            "SELECT credit_limit, used, held FROM api_key_credits WHERE api_key_id = \(key.keyID) FOR UPDATE"
        ).decode((Int64?, Int64, Int64).self) { (limit, used, held) = (l, u, h) }
        if let limit, used + held + amount > limit {
            throw Self.keyLimitExceeded(limit: limit, used: used, held: held, amount: amount)
        }
    }
}
