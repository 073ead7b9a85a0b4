import Foundation
import PostgresNIO
import TallyPostgres

/// One spend, as narrow as the consume path needs: which key, how much, and what to write in the ledger.
public struct ConsumeRequest: Sendable, Equatable {
    public var apiKey: APIKeyPrincipal
    public var amount: Int64
    public var description: String?
    /// A JSON object (`TextRules.checkMetadata` says what is allowed), or nil.
    public var metadata: JSONValue?

    public init(apiKey: APIKeyPrincipal, amount: Int64, description: String? = nil, metadata: JSONValue? = nil) {
        self.apiKey = apiKey
        self.amount = amount
        self.description = description
        self.metadata = metadata
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
    /// The path, step by step: this checks the request; `apply` (AccountOperation.swift) queues it with its
    /// account's other operations (AccountBatcher.swift), which go to the database as one `tally_apply` call,
    /// where the rules are (migration `0020_account_rules`); its outcome becomes the answer or the error here.
    public func consume(_ request: ConsumeRequest, context: QueryContext) async throws -> ConsumeResult {
        guard request.amount > 0 else { throw CreditsError(.invalidInput, "amount must be a positive integer") }
        try TextRules.checkDescription(request.description)
        if let metadata = request.metadata { try TextRules.checkMetadata(metadata) }
        let outcome = try await apply(.consume(request), context: context)
        guard outcome.kind == .ok else { throw Self.refusal(outcome, amount: request.amount, what: "spend") }
        guard let transactionID = outcome.transactionID, let balance = outcome.balance, let available = outcome.available else {
            throw Self.unexpected(outcome)
        }
        return ConsumeResult(transactionID: transactionID, balance: balance, available: available)
    }
}
