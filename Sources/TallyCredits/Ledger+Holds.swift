import Foundation
import PostgresNIO
import TallyPostgres

/// A hold and the account after the change: what `POST /v1/credits/holds` and its capture and release answer.
public struct HoldResult: Sendable, Codable, Equatable {
    public enum Status: String, Sendable, Codable {
        case open, captured, released, expired
    }

    public var holdID: UUID
    public var status: Status
    public var amount: Int64
    /// What a capture spent.
    public var captured: Int64?
    /// What went back to the account's available credits.
    public var released: Int64?
    /// The capture's ledger entry.
    public var transactionID: Int64?
    public var expiresAt: Date
    public var balance: Int64
    public var held: Int64
    public var available: Int64

    enum CodingKeys: String, CodingKey {
        case status, amount, captured, released, balance, held, available
        case holdID = "hold_id"
        case transactionID = "transaction_id"
        case expiresAt = "expires_at"
    }
}

/// Holds are two-phase spends: `reserve` sets credits aside (available drops, the balance does not), then
/// `capture` spends up to the reserved amount and returns the rest, or `release` returns all of it. A hold past
/// its expiry releases itself: lazily whenever its account is locked, and by `releaseExpiredHolds`, which the
/// server runs in the background. The account's `held` is always the sum of its open holds, and a key's
/// open holds count against its `credit_limit` until they settle.
extension Ledger {
    public static let maximumHoldTTL = 7 * 24 * 3600

    /// Reserves `amount` for `key`'s account for `ttl` seconds; insufficient-credits or key-limit-exceeded
    /// when the account's available credits or the key's allowance cannot cover it (nothing written).
    public func reserve(_ key: APIKeyPrincipal, amount: Int64, ttl: Int, description: String?, context: QueryContext) async throws -> HoldResult {
        guard amount > 0 else { throw CreditsError(.invalidInput, "amount must be a positive integer") }
        guard (1...Self.maximumHoldTTL).contains(ttl) else {
            throw CreditsError(.invalidInput, "ttl_seconds must be between 1 and \(Self.maximumHoldTTL) (7 days)")
        }
        return try await database.transaction(context) { connection in
            let (account, balance, held) = try await lockAccount(of: key.account, on: connection)
            guard balance - held >= amount else {
                throw CreditsError(.insufficientCredits, "the account has \(balance - held) credits available; this hold needs \(amount)")
            }
            try await checkKeyAllowance(key, amount: amount, on: connection)
            var created: (UUID, Date)?
            for try await row in try await connection.query(
                """
                INSERT INTO credit_holds (account_id, api_key_id, amount, description, expires_at)
                VALUES (\(account), \(key.keyID), \(amount), \(description), now() + make_interval(secs => \(ttl)))
                RETURNING id, expires_at
                """
            ).decode((UUID, Date).self) { created = row }
            guard let (holdID, expiresAt) = created else { throw CreditsError(.invalidInput, "the hold was not created") }
            try await connection.execute("UPDATE user_credits SET held = held + \(amount), updated_at = now() WHERE id = \(account)")
            try await connection.execute("UPDATE api_key_credits SET held = held + \(amount) WHERE api_key_id = \(key.keyID)")
            return HoldResult(
                holdID: holdID, status: .open, amount: amount, expiresAt: expiresAt,
                balance: balance, held: held + amount, available: balance - held - amount)
        }
    }

    /// Spends `amount` (default: all of it) of an open hold on `key`'s account and returns the rest; the spend
    /// is a `capture` ledger entry charged to the key that placed the hold.
    public func capture(_ holdID: UUID, amount: Int64?, by key: APIKeyPrincipal, context: QueryContext) async throws -> HoldResult {
        if let amount, amount <= 0 { throw CreditsError(.invalidInput, "amount must be a positive integer; release the hold to spend nothing") }
        return try await database.transaction(context) { connection in
            let locked = try await lockAccount(of: key.account, on: connection)
            let account = locked.account
            var (balance, held) = (locked.balance, locked.held)
            let hold = try await openHold(holdID, account: account, on: connection)
            let captured = amount ?? hold.amount
            guard captured <= hold.amount else {
                throw CreditsError(.invalidInput, "the hold reserves \(hold.amount); capture at most that")
            }
            try await burnGrants(of: account, amount: captured, on: connection)
            balance -= captured
            held -= hold.amount
            try await connection.execute("UPDATE user_credits SET balance = \(balance), held = \(held), updated_at = now() WHERE id = \(account)")
            try await connection.execute(
                "UPDATE api_key_credits SET used = used + \(captured), held = held - \(hold.amount) WHERE api_key_id = \(hold.keyID)")
            try await connection.execute(
                "UPDATE credit_holds SET status = 'captured', captured = \(captured), settled_at = now() WHERE id = \(holdID)")
            var transactionID: Int64 = 0
            for try await id in try await connection.query(
                """
                INSERT INTO credit_transactions (account_id, user_id, team_id, api_key_id, kind, amount, balance_after, description, hold_id)
                SELECT \(account), k.user_id, k.team_id, k.id, 'capture', \(-captured), \(balance), \(hold.description), \(holdID)
                FROM api_keys k WHERE k.id = \(hold.keyID)
                RETURNING id
                """
            ).decode(Int64.self) { transactionID = id }
            balance = try await expireGrants(of: account, balance: balance, held: held, on: connection)
            return HoldResult(
                holdID: holdID, status: .captured, amount: hold.amount, captured: captured, released: hold.amount - captured,
                transactionID: transactionID, expiresAt: hold.expiresAt, balance: balance, held: held, available: balance - held)
        }
    }

    /// Returns all of an open hold to the account.
    public func release(_ holdID: UUID, by key: APIKeyPrincipal, context: QueryContext) async throws -> HoldResult {
        try await database.transaction(context) { connection in
            let locked = try await lockAccount(of: key.account, on: connection)
            let account = locked.account
            var (balance, held) = (locked.balance, locked.held)
            let hold = try await openHold(holdID, account: account, on: connection)
            held -= hold.amount
            try await connection.execute("UPDATE user_credits SET held = \(held), updated_at = now() WHERE id = \(account)")
            try await connection.execute("UPDATE api_key_credits SET held = held - \(hold.amount) WHERE api_key_id = \(hold.keyID)")
            try await connection.execute("UPDATE credit_holds SET status = 'released', settled_at = now() WHERE id = \(holdID)")
            balance = try await expireGrants(of: account, balance: balance, held: held, on: connection)
            return HoldResult(
                holdID: holdID, status: .released, amount: hold.amount, released: hold.amount, expiresAt: hold.expiresAt,
                balance: balance, held: held, available: balance - held)
        }
    }

    struct OpenHold {
        var amount: Int64
        var keyID: UUID
        var description: String?
        var expiresAt: Date
    }

    /// The hold, locked, when it is on `account` and still open; not-found for another account's hold,
    /// conflict for a settled one.
    func openHold(_ id: UUID, account: UUID, on connection: DatabaseConnection) async throws -> OpenHold {
        for try await (amount, keyID, description, expiresAt, status) in try await connection.query(
            "SELECT amount, api_key_id, description, expires_at, status FROM credit_holds WHERE id = \(id) AND account_id = \(account) FOR UPDATE"
        ).decode((Int64, UUID, String?, Date, String).self) {
            switch status {
            case "open": return OpenHold(amount: amount, keyID: keyID, description: description, expiresAt: expiresAt)
            case "expired":
                throw CreditsError(.conflict, "hold \(id) expired at \(ISO8601DateFormatter().string(from: expiresAt)) and its credits were released; place a new hold")
            default:
                throw CreditsError(.conflict, "hold \(id) is already \(status)")
            }
        }
        throw CreditsError(.notFound, "no hold \(id) on this API key's account")
    }

    /// Marks the account's open holds past their expiry `expired` and takes them off their keys' reservations.
    /// The caller holds the account lock and lowers the account's `held` by the total returned.
    func expireHolds(of account: UUID, on connection: DatabaseConnection) async throws -> Int64 {
        var byKey: [UUID: Int64] = [:]
        for try await (key, amount) in try await connection.query(
            """
            UPDATE credit_holds SET status = 'expired', settled_at = now()
            WHERE account_id = \(account) AND status = 'open' AND expires_at <= now()
            RETURNING api_key_id, amount
            """
        ).decode((UUID, Int64).self) { byKey[key, default: 0] += amount }
        for (key, amount) in byKey.sorted(by: { $0.key.uuidString < $1.key.uuidString }) {
            try await connection.execute("UPDATE api_key_credits SET held = held - \(amount) WHERE api_key_id = \(key)")
        }
        return byKey.values.reduce(0, +)
    }

    /// Releases expired holds across accounts, at most `limit` accounts per call, one transaction per account.
    /// Returns how many accounts it settled. The server's background task calls this; reads settle lazily too.
    @discardableResult
    public func releaseExpiredHolds(limit: Int = 100, context: QueryContext) async throws -> Int {
        let accounts = try await database.connection(context) { connection in
            var accounts: [UUID] = []
            for try await id in try await connection.query(
                "SELECT DISTINCT account_id FROM credit_holds WHERE status = 'open' AND expires_at <= now() LIMIT \(limit)"
            ).decode(UUID.self) { accounts.append(id) }
            return accounts
        }
        for account in accounts {
            _ = try await database.transaction(context) { connection in try await lockAccount(account, on: connection) }
        }
        return accounts.count
    }
}

extension APIKeyPrincipal {
    /// The account the key spends from: its team's when it has one, else its owner's.
    public var account: AccountOwner { teamID.map { .team($0) } ?? .user(userID) }
}
