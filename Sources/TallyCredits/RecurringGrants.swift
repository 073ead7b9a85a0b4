import Foundation
import Logging
import PostgresNIO
import TallyPostgres

/// A recurring grant: `amount` credits every day, week or month from `anchor` (a monthly one anchored on the
/// 31st falls on the last day of shorter months), each grant expiring `expiresInSeconds` after its period starts
/// (or never), and what is left of earlier periods' grants cut to `rolloverMax` when a new period starts (nil: all
/// of it rolls over; 0: use it or lose it) and made up to `rolloverMin` by the new period's grant. Issued by the maintenance service of whichever server gets there
/// first, each period once (`tally_issue_recurring`, migration `0024_topups_and_recurring_grants`).
public struct RecurringGrant: Sendable, Codable, Equatable {
    public enum Every: String, Sendable, Codable, CaseIterable {
        case day, week, month
    }

    public var id: UUID
    public var accountID: UUID
    public var amount: Int64
    public var every: Every
    public var anchor: Date
    public var expiresInSeconds: Int64?
    public var rolloverMax: Int64?
    public var rolloverMin: Int64
    public var priority: Int
    public var description: String
    /// The next period to issue (0 is the one starting at the anchor) and when it starts.
    public var nextPeriod: Int
    public var nextAt: Date
    public var endedAt: Date?
    public var createdAt: Date
    /// The periods issued, newest first (at most the last twelve).
    public var periods: [Period]

    /// One period of a schedule, issued once.
    public struct Period: Sendable, Codable, Equatable {
        public var period: Int
        public var startsAt: Date
        /// The grant issued; nil when it would have expired before it could be issued (no server ran that long).
        public var grantID: UUID?
        /// Credits of earlier periods' grants kept into this one (at least the schedule's `rolloverMin`: the grant
        /// made up the difference), and those the rollover cap took.
        public var rolledOver: Int64
        public var forfeited: Int64
        public var issuedAt: Date

        enum CodingKeys: String, CodingKey {
            case period, forfeited
            case startsAt = "starts_at"
            case grantID = "grant_id"
            case rolledOver = "rolled_over"
            case issuedAt = "issued_at"
        }
    }

    enum CodingKeys: String, CodingKey {
        case id, amount, every, anchor, priority, description, periods
        case accountID = "account_id"
        case expiresInSeconds = "expires_in_seconds"
        case rolloverMax = "rollover_max"
        case rolloverMin = "rollover_min"
        case nextPeriod = "next_period"
        case nextAt = "next_at"
        case endedAt = "ended_at"
        case createdAt = "created_at"
    }
}

/// A new schedule, as the API takes it.
public struct RecurringGrantRequest: Sendable {
    public var amount: Int64
    public var every: RecurringGrant.Every
    /// When the first period starts; nil: now. At most a year back (the periods before the schedule was made
    /// are not issued: it starts with the period `now` falls in) or ahead.
    public var anchor: Date?
    public var expiresInSeconds: Int64?
    public var rolloverMax: Int64?
    /// At least this much of earlier periods' credits is there when a period starts: its grant makes up the rest.
    public var rolloverMin: Int64
    public var priority: Int
    public var description: String

    public init(
        amount: Int64, every: RecurringGrant.Every, anchor: Date? = nil, expiresInSeconds: Int64? = nil, rolloverMax: Int64? = nil,
        rolloverMin: Int64 = 0, priority: Int = 0, description: String
    ) {
        self.amount = amount
        self.every = every
        self.anchor = anchor
        self.expiresInSeconds = expiresInSeconds
        self.rolloverMax = rolloverMax
        self.rolloverMin = rolloverMin
        self.priority = priority
        self.description = description
    }

    func check(now: Date) throws {
        guard amount > 0 else { throw CreditsError(.invalidInput, "amount must be a positive integer") }
        guard Int32(exactly: priority) != nil else {
            throw CreditsError(.invalidInput, "priority must lie between \(Int32.min) and \(Int32.max) (it is stored as a 32-bit integer)")
        }
        if let anchor, abs(anchor.timeIntervalSince(now)) > 366 * 86_400 {
            throw CreditsError(.invalidInput, "anchor must be within a year of now; leave it out to start now")
        }
        if let expiresInSeconds, !(1...TextRules.longestGrantLife).contains(expiresInSeconds) {
            throw CreditsError(.invalidInput, "expires_in_seconds must be from 1 to \(TextRules.longestGrantLife) (ten years)")
        }
        if let rolloverMax, rolloverMax < 0 { throw CreditsError(.invalidInput, "rollover_max cannot be negative (0: nothing rolls over)") }
        guard rolloverMin >= 0 else { throw CreditsError(.invalidInput, "rollover_min cannot be negative") }
        if let rolloverMax, rolloverMin > rolloverMax { throw CreditsError(.invalidInput, "rollover_min cannot be more than rollover_max") }
        guard !amount.addingReportingOverflow(rolloverMin).overflow else { throw CreditsError(.invalidInput, "amount and rollover_min together overflow a 64-bit integer") }
        try TextRules.checkDescription(description)
    }
}

/// Recurring grants (`recurring_grants`, a row per issued period in `recurring_grant_periods`).
public struct RecurringGrants: Sendable {
    public let database: Database

    public init(database: Database) {
        self.database = database
    }

    /// A schedule on `owner`'s account; the period `now` falls in is issued at once when it has started.
    public func create(
        on owner: AccountOwner, _ request: RecurringGrantRequest, by actor: Actor, now: Date = Date(), context: QueryContext
    ) async throws -> RecurringGrant {
        try request.check(now: now)
        let anchor = request.anchor ?? now
        let ledger = Ledger(database: database)
        return try await database.transaction(context) { connection in
            let (account, _, _) = try await ledger.lockAccount(of: owner, on: connection)
            var made: UUID?
            for try await id in try await connection.query(
                """
                WITH current AS (SELECT tally_current_period(\(anchor), \(request.every.rawValue), \(now)) AS n)
                INSERT INTO recurring_grants (account_id, amount, every, anchor, expires_in_seconds, rollover_max, rollover_min, priority,
                    description, next_period, next_at, created_by_name)
                SELECT \(account), \(request.amount), \(request.every.rawValue), \(anchor), \(request.expiresInSeconds), \(request.rolloverMax),
                    \(request.rolloverMin), \(request.priority), \(request.description), c.n, tally_period_start(\(anchor), \(request.every.rawValue), c.n), \(actor.name)
                FROM current c RETURNING id
                """
            ).decode(UUID.self) { made = id }
            guard let made else { throw CreditsError(.invalidInput, "the recurring grant was not created") }
            try await connection.execute("SELECT tally_issue_recurring(\(made), \(now))")
            try await AdminAudit.record(
                "recurring-grant.create", by: actor,
                subject: [
                    "recurring_grant_id": .string(made.lowercasedString), "account_id": .string(account.lowercasedString),
                    "amount": .integer(request.amount), "every": .string(request.every.rawValue),
                ],
                on: connection, logger: context.logger)
            guard let schedule = try await schedules(where: "r.id = \(made)", on: connection).first else {
                throw CreditsError(.invalidInput, "the recurring grant was not created")
            }
            return schedule
        }
    }

    public func list(on owner: AccountOwner, context: QueryContext) async throws -> [RecurringGrant] {
        try await database.connection(context) { connection in
            try await schedules(where: "a.\(unescaped: owner.column) = \(owner.id)", on: connection)
        }
    }

    /// Ends a schedule: nothing more is issued; what it granted stays.
    public func end(_ id: UUID, on owner: AccountOwner, by actor: Actor, context: QueryContext) async throws -> RecurringGrant {
        try await database.transaction(context) { connection in
            var found = false
            for try await _ in try await connection.query(
                """
                UPDATE recurring_grants r SET ended_at = coalesce(r.ended_at, now()) FROM user_credits a
                WHERE r.id = \(id) AND a.id = r.account_id AND a.\(unescaped: owner.column) = \(owner.id) RETURNING r.id
                """
            ) { found = true }
            guard found, let schedule = try await schedules(where: "r.id = \(id)", on: connection).first else {
                throw CreditsError(.notFound, "no recurring grant \(id.lowercasedString) on this account")
            }
            try await AdminAudit.record(
                "recurring-grant.end", by: actor, subject: ["recurring_grant_id": .string(id.lowercasedString)], on: connection, logger: context.logger)
            return schedule
        }
    }

    /// Issues every period due by `now` (missed ones too, oldest first), each schedule in a transaction of its own;
    /// a schedule another server is issuing is left to it. A schedule that fails is logged and tried again next
    /// round; the others go on. Returns how many periods were recorded.
    @discardableResult
    public func issueDue(now: Date = Date(), limit: Int = 100, context: QueryContext) async throws -> Int {
        let due = try await database.connection(context) { connection in
            var due: [UUID] = []
            for try await id in try await connection.query(
                "SELECT id FROM recurring_grants WHERE ended_at IS NULL AND next_at <= \(now) ORDER BY next_at, id LIMIT \(limit)"
            ).decode(UUID.self) { due.append(id) }
            return due
        }
        var issued = 0
        for schedule in due {
            do {
                try await database.transaction(context) { connection in
                    for try await count in try await connection.query("SELECT tally_issue_recurring(\(schedule), \(now))").decode(Int.self) {
                        issued += count
                    }
                }
            } catch let error where !(error is CancellationError) {
                context.logger.warning(
                    "recurring grant not issued; trying again next round",
                    metadata: ["tally.recurring_grant_id": "\(schedule.lowercasedString)", "error": "\(error)"])
            }
        }
        return issued
    }

    /// The schedules `condition` (on `recurring_grants r` joined to its account `a`) picks, oldest first, each with
    /// its last twelve periods.
    private func schedules(where condition: PostgresQuery, on connection: DatabaseConnection) async throws -> [RecurringGrant] {
        let query = PostgresQuery(
            unsafeSQL: """
                SELECT r.id, r.account_id, r.amount, r.every, r.anchor, r.expires_in_seconds, r.rollover_max, r.rollover_min, r.priority,
                       r.description, r.next_period, r.next_at, r.ended_at, r.created_at
                FROM recurring_grants r JOIN user_credits a ON a.id = r.account_id
                WHERE \(condition.sql)
                ORDER BY r.created_at, r.id
                """,
            binds: condition.binds)
        var schedules: [RecurringGrant] = []
        for try await (id, account, amount, every, anchor, expires, rollover, floor, priority, description, next, nextAt, ended, created)
            in try await connection.query(query)
            .decode((UUID, UUID, Int64, String, Date, Int64?, Int64?, Int64, Int, String, Int, Date, Date?, Date).self)
        {
            schedules.append(RecurringGrant(
                id: id, accountID: account, amount: amount, every: RecurringGrant.Every(rawValue: every) ?? .month, anchor: anchor,
                expiresInSeconds: expires, rolloverMax: rollover, rolloverMin: floor, priority: priority, description: description, nextPeriod: next,
                nextAt: nextAt, endedAt: ended, createdAt: created, periods: []))
        }
        // Their periods in one statement, the last twelve of each, newest first.
        let index = Dictionary(uniqueKeysWithValues: schedules.enumerated().map { ($0.element.id, $0.offset) })
        for try await (schedule, period, starts, grant, rolled, forfeited, issued) in try await connection.query(
            """
            SELECT s.id, p.period, p.starts_at, p.grant_id, p.rolled_over, p.forfeited, p.issued_at
            FROM unnest(\(schedules.map(\.id))::uuid[]) AS s(id)
            CROSS JOIN LATERAL (
                SELECT * FROM recurring_grant_periods p WHERE p.recurring_grant_id = s.id ORDER BY p.period DESC LIMIT 12) p
            ORDER BY s.id, p.period DESC
            """
        ).decode((UUID, Int, Date, UUID?, Int64, Int64, Date).self) {
            guard let at = index[schedule] else { continue }
            schedules[at].periods.append(RecurringGrant.Period(
                period: period, startsAt: starts, grantID: grant, rolledOver: rolled, forfeited: forfeited, issuedAt: issued))
        }
        return schedules
    }
}
