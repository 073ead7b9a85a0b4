import Foundation
import PostgresNIO
import TallyPostgres

/// An automatic top-up rule on an account: when its available credits fall below `below`, ask the product to
/// charge its customer (`topup.requested`) or grant at once (`topup.granted`, for promotional credits) — `amount`
/// credits, or enough to bring the account to `topUpTo`. Decided by the database in the transaction that made the
/// credits fall (`tally_balance_changed`, migration `0024_topups_and_recurring_grants`), once per crossing.
public struct TopUpRule: Sendable, Codable, Equatable {
    public enum Action: String, Sendable, Codable, CaseIterable {
        /// Write `topup.requested`: the product charges its customer and grants, with the top-up's id as
        /// Idempotency-Key.
        case request
        /// Grant at once (`topup.granted`).
        case grant
    }

    public var id: UUID
    public var accountID: UUID
    public var below: Int64
    public var amount: Int64?
    public var topUpTo: Int64?
    public var action: Action
    public var maxPerDay: Int
    public var expiresInSeconds: Int64?
    public var description: String
    /// True while the account is at or above `below` (the rule can fire).
    public var armed: Bool
    public var createdAt: Date

    enum CodingKeys: String, CodingKey {
        case id, below, amount, action, description, armed
        case accountID = "account_id"
        case topUpTo = "top_up_to"
        case maxPerDay = "max_per_day"
        case expiresInSeconds = "expires_in_seconds"
        case createdAt = "created_at"
    }
}

/// What a rule asked for or granted at one crossing.
public struct TopUp: Sendable, Codable, Equatable {
    public var id: UUID
    /// Nil once the rule was removed.
    public var ruleID: UUID?
    public var action: TopUpRule.Action
    public var amount: Int64
    /// The available credits when the rule fired.
    public var available: Int64
    /// The ledger entry that crossed the line (nil when a hold did: holds write no entry).
    public var transactionID: Int64?
    /// The grant made (action `grant`).
    public var grantID: UUID?
    /// The event written (its webhook-id).
    public var eventID: String?
    public var createdAt: Date

    enum CodingKeys: String, CodingKey {
        case id, action, amount, available
        case ruleID = "rule_id"
        case transactionID = "transaction_id"
        case grantID = "grant_id"
        case eventID = "event_id"
        case createdAt = "created_at"
    }
}

/// A new rule, as the API takes it.
public struct TopUpRuleRequest: Sendable {
    public var below: Int64
    public var amount: Int64?
    public var topUpTo: Int64?
    public var action: TopUpRule.Action
    public var maxPerDay: Int
    public var expiresInSeconds: Int64?
    public var description: String

    public static let defaultMaxPerDay = 5

    public init(
        below: Int64, amount: Int64? = nil, topUpTo: Int64? = nil, action: TopUpRule.Action = .request, maxPerDay: Int = defaultMaxPerDay,
        expiresInSeconds: Int64? = nil, description: String = "automatic top-up"
    ) {
        self.below = below
        self.amount = amount
        self.topUpTo = topUpTo
        self.action = action
        self.maxPerDay = maxPerDay
        self.expiresInSeconds = expiresInSeconds
        self.description = description
    }

    func check() throws {
        guard below >= 1 else { throw CreditsError(.invalidInput, "below must be at least 1 credit") }
        guard (amount == nil) != (topUpTo == nil) else {
            throw CreditsError(.invalidInput, "give exactly one of amount (grant that much) and top_up_to (bring the account to that much)")
        }
        if let amount, amount <= 0 { throw CreditsError(.invalidInput, "amount must be a positive integer") }
        if let topUpTo, topUpTo < below { throw CreditsError(.invalidInput, "top_up_to must be at least below (\(below)), or the top-up would not lift the account over the line") }
        guard (1...1000).contains(maxPerDay) else { throw CreditsError(.invalidInput, "max_per_day must be from 1 to 1000") }
        if let expiresInSeconds, !(1...TextRules.longestGrantLife).contains(expiresInSeconds) {
            throw CreditsError(.invalidInput, "expires_in_seconds must be from 1 to \(TextRules.longestGrantLife) (ten years)")
        }
        try TextRules.checkDescription(description)
    }
}

/// Top-up rules (`topup_rules`) and what they did (`topups`).
public struct TopUps: Sendable {
    public let database: Database

    public init(database: Database) {
        self.database = database
    }

    /// A rule on `owner`'s account, decided at once against the account as it is: an account already below the
    /// line gets its top-up (or request) now, keyed by its newest ledger entry.
    public func create(on owner: AccountOwner, _ request: TopUpRuleRequest, by actor: Actor, context: QueryContext) async throws -> TopUpRule {
        try request.check()
        let ledger = Ledger(database: database)
        return try await database.transaction(context) { connection in
            let (account, balance, held) = try await ledger.lockAccount(of: owner, on: connection)
            var made: UUID?
            for try await id in try await connection.query(
                """
                INSERT INTO topup_rules (account_id, below, amount, top_up_to, action, max_per_day, expires_in_seconds, description, created_by_name)
                VALUES (\(account), \(request.below), \(request.amount), \(request.topUpTo), \(request.action.rawValue), \(request.maxPerDay),
                    \(request.expiresInSeconds), \(request.description), \(actor.name))
                RETURNING id
                """
            ).decode(UUID.self) { made = id }
            guard let made else { throw CreditsError(.invalidInput, "the rule was not created") }
            try await connection.execute(
                """
                SELECT tally_balance_changed(\(account), \(balance - held), (SELECT max(t.id) FROM credit_transactions t WHERE t.account_id = \(account)))
                """)
            try await AdminAudit.record(
                "topup-rule.create", by: actor,
                subject: ["rule_id": .string(made.lowercasedString), "account_id": .string(account.lowercasedString)],
                on: connection, logger: context.logger)
            guard let rule = try await rules(where: "r.id = \(made)", on: connection).first else {
                throw CreditsError(.invalidInput, "the rule was not created")
            }
            return rule
        }
    }

    public func list(on owner: AccountOwner, context: QueryContext) async throws -> [TopUpRule] {
        try await database.connection(context) { connection in
            try await rules(where: "a.\(unescaped: owner.column) = \(owner.id)", on: connection)
        }
    }

    public func delete(_ id: UUID, on owner: AccountOwner, by actor: Actor, context: QueryContext) async throws {
        try await database.transaction(context) { connection in
            var found = false
            for try await _ in try await connection.query(
                """
                DELETE FROM topup_rules r USING user_credits a
                WHERE r.id = \(id) AND a.id = r.account_id AND a.\(unescaped: owner.column) = \(owner.id) RETURNING r.id
                """
            ) { found = true }
            guard found else { throw CreditsError(.notFound, "no top-up rule \(id.lowercasedString) on this account") }
            try await AdminAudit.record("topup-rule.delete", by: actor, subject: ["rule_id": .string(id.lowercasedString)], on: connection, logger: context.logger)
        }
    }

    /// The account's top-ups, newest first.
    public func history(of owner: AccountOwner, limit: Int = 50, context: QueryContext) async throws -> [TopUp] {
        try await database.connection(context) { connection in
            var topups: [TopUp] = []
            for try await (id, rule, action, amount, available, entry, grant, event, created) in try await connection.query(
                """
                SELECT x.id, x.rule_id, x.action, x.amount, x.available, x.transaction_id, x.grant_id, x.event_id, x.created_at
                FROM topups x JOIN user_credits a ON a.id = x.account_id
                WHERE a.\(unescaped: owner.column) = \(owner.id) ORDER BY x.created_at DESC, x.id LIMIT \(limit)
                """
            ).decode((UUID, UUID?, String, Int64, Int64, Int64?, UUID?, String?, Date).self) {
                topups.append(TopUp(
                    id: id, ruleID: rule, action: TopUpRule.Action(rawValue: action) ?? .request, amount: amount, available: available,
                    transactionID: entry, grantID: grant, eventID: event, createdAt: created))
            }
            return topups
        }
    }

    /// The rules `condition` (on `topup_rules r` joined to its account `a`) picks, oldest first.
    private func rules(where condition: PostgresQuery, on connection: DatabaseConnection) async throws -> [TopUpRule] {
        let query = PostgresQuery(
            unsafeSQL: """
                SELECT r.id, r.account_id, r.below, r.amount, r.top_up_to, r.action, r.max_per_day, r.expires_in_seconds, r.description,
                       r.armed, r.created_at
                FROM topup_rules r JOIN user_credits a ON a.id = r.account_id
                WHERE \(condition.sql)
                ORDER BY r.created_at, r.id
                """,
            binds: condition.binds)
        var rules: [TopUpRule] = []
        for try await (id, account, below, amount, upTo, action, perDay, expires, description, armed, created) in try await connection.query(query)
            .decode((UUID, UUID, Int64, Int64?, Int64?, String, Int, Int64?, String, Bool, Date).self)
        {
            rules.append(TopUpRule(
                id: id, accountID: account, below: below, amount: amount, topUpTo: upTo, action: TopUpRule.Action(rawValue: action) ?? .request,
                maxPerDay: perDay, expiresInSeconds: expires, description: description, armed: armed, createdAt: created))
        }
        return rules
    }
}
