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
    /// Holds, captures and releases queue per account with its spends and go in the same batches (`apply`).
    public func reserve(_ key: APIKeyPrincipal, amount: Int64, ttl: Int, description: String?, context: QueryContext) async throws -> HoldResult {
        guard amount > 0 else { throw CreditsError(.invalidInput, "amount must be a positive integer") }
        guard (1...Self.maximumHoldTTL).contains(ttl) else {
            throw CreditsError(.invalidInput, "ttl_seconds must be between 1 and \(Self.maximumHoldTTL) (7 days)")
        }
        try TextRules.checkDescription(description)
        let outcome = try await apply(.hold(key: key, amount: amount, ttl: ttl, description: description), context: context)
        if outcome.kind != .ok { throw Self.refusal(outcome, amount: amount, what: "hold") }
        return try Self.holdResult(outcome, status: .open)
    }

    /// Spends `amount` (default: all of it) of an open hold `key` placed and returns the rest; the spend is a
    /// `capture` ledger entry charged to that key. Another key, even of the same account, finds no such hold.
    public func capture(_ holdID: UUID, amount: Int64?, by key: APIKeyPrincipal, context: QueryContext) async throws -> HoldResult {
        if let amount, amount <= 0 { throw CreditsError(.invalidInput, "amount must be a positive integer; release the hold to spend nothing") }
        return try Self.holdResult(try await apply(.capture(hold: holdID, amount: amount, key: key), context: context), status: .captured, hold: holdID)
    }

    /// Returns all of an open hold to the account.
    public func release(_ holdID: UUID, by key: APIKeyPrincipal, context: QueryContext) async throws -> HoldResult {
        try Self.holdResult(try await apply(.release(hold: holdID, key: key), context: context), status: .released, hold: holdID)
    }

    /// The key that placed `holdID`, when `user` may settle it from a session: the hold is on their own account,
    /// or on a team's they own or administer. Not-found for anyone else (a hold they cannot see); conflict when
    /// its key was revoked (which released the hold).
    public func placingKey(of holdID: UUID, for user: User, context: QueryContext) async throws -> APIKeyPrincipal {
        try await database.connection(context) { connection in
            for try await (key, keyUser, keyTeam, live) in try await connection.query(
                """
                SELECT k.id, k.user_id, k.team_id, k.revoked_at IS NULL
                FROM credit_holds h JOIN api_keys k ON k.id = h.api_key_id JOIN user_credits a ON a.id = h.account_id
                WHERE h.id = \(holdID) AND (a.user_id = \(user.id) OR EXISTS (
                    SELECT 1 FROM team_members m WHERE m.team_id = a.team_id AND m.user_id = \(user.id) AND m.role IN ('owner', 'admin')))
                """
            ).decode((UUID, UUID, UUID?, Bool).self) {
                guard live else {
                    throw CreditsError(.conflict, "hold \(holdID.lowercasedString) was released when the API key that placed it was revoked")
                }
                return APIKeyPrincipal(keyID: key, userID: keyUser, teamID: keyTeam)
            }
            throw CreditsError(.notFound, "no hold \(holdID.lowercasedString) on your account or a team's you own or administer")
        }
    }

    /// The answer for a hold operation's outcome, or the error for a refused one.
    static func holdResult(_ outcome: OperationOutcome, status: HoldResult.Status, hold: UUID? = nil) throws -> HoldResult {
        let named = hold.map { " \($0.lowercasedString)" } ?? ""
        switch outcome.kind {
        case .ok: break
        case .revoked, .insufficientCredits, .keyLimitExceeded: throw refusal(outcome, amount: outcome.holdAmount, what: "hold")
        case .holdNotFound: throw CreditsError(.notFound, "no hold\(named) placed by this API key")
        case .holdExpired:
            let expired = outcome.expiresAt.map { ISO8601DateFormatter().string(from: $0) } ?? "its expiry"
            throw CreditsError(.conflict, "hold\(named) expired at \(expired) and its credits were released; place a new hold")
        case .holdCaptured: throw CreditsError(.conflict, "hold\(named) is already captured")
        case .holdReleased: throw CreditsError(.conflict, "hold\(named) is already released")
        case .captureExceedsHold: throw CreditsError(.invalidInput, "the hold reserves \(outcome.holdAmount ?? 0); capture at most that")
        case .again, .idempotencyKeyReused, .idempotencyInProgress, .idempotencyAnswerKept: throw unexpected(outcome)
        }
        guard let holdID = outcome.holdID, let amount = outcome.holdAmount, let expiresAt = outcome.expiresAt,
              let balance = outcome.balance, let held = outcome.held, let available = outcome.available else { throw unexpected(outcome) }
        let captured = status == .captured ? outcome.captured : nil
        return HoldResult(
            holdID: holdID, status: status, amount: amount, captured: captured,
            released: status == .open ? nil : amount - (captured ?? 0),
            transactionID: status == .captured ? outcome.transactionID : nil, expiresAt: expiresAt,
            balance: balance, held: held, available: available)
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
