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
    /// Locks the key's allowance row and refuses when `amount` more would take what it has spent plus what its
    /// open holds reserve past its `credit_limit`.
    func checkKeyAllowance(_ key: APIKeyPrincipal, amount: Int64, on connection: PostgresConnection) async throws {
        var limit: Int64?
        var used: Int64 = 0
        var held: Int64 = 0
        for try await (l, u, h) in try await connection.query(
            "SELECT credit_limit, used, held FROM api_key_credits WHERE api_key_id = \(key.keyID) FOR UPDATE", logger: LocalCluster.quietLogger
        ).decode((Int64?, Int64, Int64).self) { (limit, used, held) = (l, u, h) }
        if let limit, used + held + amount > limit {
            let reserved = held > 0 ? " (\(held) of it reserved by open holds)" : ""
            throw CreditsError(.keyLimitExceeded, "this API key may spend \(max(0, limit - used - held)) more credits (limit \(limit), used \(used)\(reserved)); this request needs \(amount)")
        }
    }

    /// Spends `amount` from the key's owner's account in one transaction: the account can never go
    /// negative (nor below what holds reserve), the key never spends past its `credit_limit`, grants burn by
    /// priority, then soonest expiry, then age, and the spend is in the ledger when this returns.
    /// When the account or the key cannot cover it, nothing is written.
    public func consume(_ request: ConsumeRequest) async throws -> ConsumeResult {
        guard request.amount > 0 else { throw CreditsError(.invalidInput, "amount must be a positive integer") }
        return try await client.transaction { connection in
            let account = try await accountID(for: request.apiKey.account, on: connection)
            let (balance, held) = try await lockAccount(account, on: connection)
            guard balance - held >= request.amount else {
                throw CreditsError(.insufficientCredits, "the account has \(balance - held) credits available; this spend needs \(request.amount)")
            }
            try await checkKeyAllowance(request.apiKey, amount: request.amount, on: connection)

            try await burnGrants(of: account, amount: request.amount, on: connection)
            let newBalance = balance - request.amount
            try await connection.execute("UPDATE user_credits SET balance = \(newBalance), updated_at = now() WHERE id = \(account)")
            try await connection.execute("INSERT INTO api_key_credits (api_key_id, user_id, used) VALUES (\(request.apiKey.keyID), \(request.apiKey.userID), \(request.amount)) ON CONFLICT (api_key_id) DO UPDATE SET used = api_key_credits.used + excluded.used")
            var transactionID: Int64 = 0
            let teamID = request.apiKey.teamID
            for try await id in try await connection.query(
                """
                INSERT INTO credit_transactions (account_id, user_id, team_id, api_key_id, kind, amount, balance_after, description, metadata)
                VALUES (\(account), \(request.apiKey.userID), \(teamID), \(request.apiKey.keyID), 'consume', \(-request.amount), \(newBalance),
                        \(request.description), \(request.metadataJSON)::jsonb)
                RETURNING id
                """, logger: LocalCluster.quietLogger
            ).decode(Int64.self) { transactionID = id }
            return ConsumeResult(transactionID: transactionID, balance: newBalance, available: newBalance - held)
        }
    }
}
