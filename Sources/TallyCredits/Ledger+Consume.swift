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
        let key = request.apiKey
        // Four statements between BEGIN and COMMIT: lock the account, charge the key's allowance, burn
        // grants, write the balance and the ledger entry.
        return try await client.transaction { connection in
            let (account, balance, held) = try await lockAccount(of: key.account, on: connection)
            guard balance - held >= request.amount else {
                throw CreditsError(.insufficientCredits, "the account has \(balance - held) credits available; this spend needs \(request.amount)")
            }
            try await chargeKey(key, amount: request.amount, on: connection)
            try await burnGrants(of: account, amount: request.amount, on: connection)
            let newBalance = balance - request.amount
            var transactionID: Int64 = 0
            for try await id in try await connection.query(
                """
                WITH account AS (UPDATE user_credits SET balance = \(newBalance), updated_at = now() WHERE id = \(account) RETURNING id)
                INSERT INTO credit_transactions (account_id, user_id, team_id, api_key_id, kind, amount, balance_after, description, metadata)
                SELECT account.id, \(key.userID), \(key.teamID), \(key.keyID), 'consume', \(-request.amount), \(newBalance),
                       \(request.description), \(request.metadataJSON)::jsonb
                FROM account
                RETURNING id
                """, logger: LocalCluster.quietLogger
            ).decode(Int64.self) { transactionID = id }
            return ConsumeResult(transactionID: transactionID, balance: newBalance, available: newBalance - held)
        }
    }

    /// Adds `amount` to what the key has spent, in one statement when its allowance covers it (spent plus
    /// reserved by open holds within `credit_limit`); key-limit-exceeded otherwise. The caller holds the
    /// account lock, so key rows are always locked after their account's.
    func chargeKey(_ key: APIKeyPrincipal, amount: Int64, on connection: PostgresConnection) async throws {
        var charged = false
        for try await _ in try await connection.query(
            """
            UPDATE api_key_credits SET used = used + \(amount)
            WHERE api_key_id = \(key.keyID) AND (credit_limit IS NULL OR used + held + \(amount) <= credit_limit)
            RETURNING used
            """, logger: LocalCluster.quietLogger
        ) { charged = true }
        if charged { return }
        // Refused, or a key with no allowance row yet (no limit): the slow path says which.
        try await checkKeyAllowance(key, amount: amount, on: connection)
        try await connection.execute("""
            INSERT INTO api_key_credits (api_key_id, user_id, used) VALUES (\(key.keyID), \(key.userID), \(amount))
            ON CONFLICT (api_key_id) DO UPDATE SET used = api_key_credits.used + excluded.used
            """)
    }
}
