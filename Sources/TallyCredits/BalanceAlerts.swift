import Foundation
import PostgresNIO
import TallyPostgres

/// A balance alert: fires `balance.threshold_crossed` when the account's available credits fall below its
/// threshold (credits, or a percentage of the newest grant), and `balance.recovered` when they are back.
public struct BalanceAlert: Sendable, Codable, Equatable {
    public var id: UUID
    public var accountID: UUID
    public var threshold: Int64?
    public var percent: Int?
    /// True while the available credits are at or above the threshold (the alert can fire).
    public var armed: Bool
    public var createdAt: Date

    enum CodingKeys: String, CodingKey {
        case id, threshold, percent, armed
        case accountID = "account_id"
        case createdAt = "created_at"
    }
}

/// Balance alerts (`balance_alerts`). They are decided by the database where balances change
/// (`tally_balance_changed`, in the spend's own transaction), never by polling.
public struct BalanceAlerts: Sendable {
    public let database: Database

    public init(database: Database) {
        self.database = database
    }

    /// An alert on `owner`'s account at `threshold` credits or `percent` of the newest grant (exactly one), armed
    /// when the account is at or above it now: an account already below fires once it has recovered and falls
    /// again.
    public func create(on owner: AccountOwner, threshold: Int64?, percent: Int?, by actor: Actor, context: QueryContext) async throws -> BalanceAlert {
        guard (threshold == nil) != (percent == nil) else { throw CreditsError(.invalidInput, "give exactly one of threshold and percent") }
        if let threshold, threshold < 0 { throw CreditsError(.invalidInput, "threshold cannot be negative") }
        if let percent, !(1...100).contains(percent) { throw CreditsError(.invalidInput, "percent must be from 1 to 100") }
        let ledger = Ledger(database: database)
        return try await database.transaction(context) { connection in
            let (account, balance, held) = try await ledger.lockAccount(of: owner, on: connection)
            var alert: BalanceAlert?
            for try await (id, armed, created) in try await connection.query(
                """
                INSERT INTO balance_alerts (account_id, threshold, percent, armed)
                SELECT \(account), \(threshold), \(percent), \(balance - held) >= tally_alert_threshold(\(account), \(threshold)::bigint, \(percent)::integer)
                RETURNING id, armed, created_at
                """
            ).decode((UUID, Bool, Date).self) {
                alert = BalanceAlert(id: id, accountID: account, threshold: threshold, percent: percent, armed: armed, createdAt: created)
            }
            guard let alert else { throw CreditsError(.invalidInput, "the alert was not created") }
            try await AdminAudit.record(
                "alert.create", by: actor,
                subject: ["alert_id": .string(alert.id.lowercasedString), "account_id": .string(account.lowercasedString)],
                on: connection, logger: context.logger)
            return alert
        }
    }

    public func list(on owner: AccountOwner, context: QueryContext) async throws -> [BalanceAlert] {
        try await database.connection(context) { connection in
            var alerts: [BalanceAlert] = []
            for try await (id, account, threshold, percent, armed, created) in try await connection.query(
                """
                SELECT b.id, b.account_id, b.threshold, b.percent, b.armed, b.created_at FROM balance_alerts b
                JOIN user_credits a ON a.id = b.account_id WHERE a.\(unescaped: owner.column) = \(owner.id) ORDER BY b.created_at, b.id
                """
            ).decode((UUID, UUID, Int64?, Int?, Bool, Date).self) {
                alerts.append(BalanceAlert(id: id, accountID: account, threshold: threshold, percent: percent, armed: armed, createdAt: created))
            }
            return alerts
        }
    }

    public func delete(_ id: UUID, on owner: AccountOwner, by actor: Actor, context: QueryContext) async throws {
        try await database.transaction(context) { connection in
            var found = false
            for try await _ in try await connection.query(
                """
                DELETE FROM balance_alerts b USING user_credits a
                WHERE b.id = \(id) AND a.id = b.account_id AND a.\(unescaped: owner.column) = \(owner.id) RETURNING b.id
                """
            ) { found = true }
            guard found else { throw CreditsError(.notFound, "no alert \(id.lowercasedString) on this account") }
            try await AdminAudit.record("alert.delete", by: actor, subject: ["alert_id": .string(id.lowercasedString)], on: connection, logger: context.logger)
        }
    }

    /// Emits `grant.expiring` once for each grant with credits left that expires within `ahead`, each in a
    /// transaction holding its account's lock (the event's sequence). Returns how many it sent.
    @discardableResult
    public func noticeExpiringGrants(ahead: Duration, limit: Int = 100, context: QueryContext) async throws -> Int {
        let grants = try await database.connection(context) { connection in
            var grants: [(UUID, UUID)] = []
            for try await row in try await connection.query(
                """
                SELECT id, account_id FROM credit_grants
                WHERE expiring_notified_at IS NULL AND remaining > 0 AND expires_at IS NOT NULL
                  AND expires_at <= now() + make_interval(secs => \(ahead.inSeconds)) AND expires_at > now()
                ORDER BY expires_at LIMIT \(limit)
                """
            ).decode((UUID, UUID).self) { grants.append(row) }
            return grants
        }
        var sent = 0
        for (grant, account) in grants {
            try await database.transaction(context) { connection in
                try await connection.execute("SELECT 1 FROM user_credits WHERE id = \(account) FOR UPDATE")
                for try await _ in try await connection.query(
                    """
                    WITH marked AS (
                        UPDATE credit_grants SET expiring_notified_at = now()
                        WHERE id = \(grant) AND expiring_notified_at IS NULL RETURNING id, remaining, expires_at
                    )
                    SELECT tally_emit(\(account), 'grant.expiring', jsonb_build_object(
                        'grant_id', m.id, 'remaining', m.remaining,
                        'expires_at', to_char(m.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')))
                    FROM marked m
                    """
                ) { sent += 1 }
            }
        }
        return sent
    }
}
