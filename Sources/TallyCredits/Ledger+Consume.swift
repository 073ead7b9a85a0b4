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

extension Ledger {
    /// Spends `amount` from the key's account: the account can never go negative (nor below what holds
    /// reserve), the key never spends past its `credit_limit`, grants burn by priority, then soonest expiry,
    /// then age, and the spend is committed in the ledger when this returns. When the account or the key
    /// cannot cover it, nothing is written.
    ///
    /// Concurrent spends are combined: they queue per account and go with the account's other operations as
    /// one `tally_apply` statement, one round trip and one commit for the batch (see `apply` and
    /// `AccountBatcher`).
    public func consume(_ request: ConsumeRequest, context: QueryContext) async throws -> ConsumeResult {
        guard request.amount > 0 else { throw CreditsError(.invalidInput, "amount must be a positive integer") }
        try TextRules.checkDescription(request.description)
        try TextRules.checkMetadataSize(request.metadataJSON)
        let outcome = try await apply(.consume(request), context: context)
        if let refusal = Self.refusal(outcome, amount: request.amount, what: "spend") { throw refusal }
        guard outcome.outcome == "ok", let transactionID = outcome.transactionID, let balance = outcome.balance, let available = outcome.available else {
            throw Self.unexpected(outcome)
        }
        return ConsumeResult(transactionID: transactionID, balance: balance, available: available)
    }

    static func keyLimitExceeded(limit: Int64, used: Int64, held: Int64, amount: Int64, what: String) -> CreditsError {
        let reserved = held > 0 ? " (\(held) of it reserved by open holds)" : ""
        return CreditsError(
            .keyLimitExceeded,
            "this API key may spend \(max(0, limit - used - held)) more credits (limit \(limit), used \(used)\(reserved)); this \(what) needs \(amount)")
    }
}
