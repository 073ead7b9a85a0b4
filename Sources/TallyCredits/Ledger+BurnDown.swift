import Foundation
import PostgresNIO
import TallyPostgres

/// Spend per API key per day: the keys that spent most, named, and the rest together.
public struct KeySpend: Sendable, Codable, Equatable {
    public struct Key: Sendable, Codable, Equatable {
        /// Nil for the rest of the keys together.
        public var id: UUID?
        public var name: String
        public var prefix: String?
        public var total: Int64
    }

    public struct Day: Sendable, Codable, Equatable {
        public var day: Date
        /// Spent that day by each of `keys`, in their order.
        public var spent: [Int64]
    }

    public var keys: [Key]
    public var days: [Day]
}

extension Ledger {
    static let spendKinds = ["consume", "capture"]

    /// The account's last `days` UTC days (today last, none before its first ledger entry), the spend rate of the
    /// last seven, and the projection from its balance now (`BurnDown.project`): the grants the balance read
    /// answers, and the account's top-up rules.
    /// `balance`, when the caller has just read it (`balance(of:)`), is used instead of reading it again.
    public func burnDown(
        of owner: AccountOwner, liveKey: UUID? = nil, balance known: Balance? = nil, days: Int = 30, now: Date = Date(), context: QueryContext
    ) async throws -> BurnDown {
        let balance: Balance
        if let known { balance = known } else { balance = try await self.balance(of: owner, liveKey: liveKey, context: context) }
        let today = Self.utcDay(now)
        let windowStart = today.addingTimeInterval(-Double(days - 1) * 86_400)
        // The window's entries by day, and the balance, in one statement (one snapshot): the balance at each
        // day's end is the balance now less what came after (the ledger sums to the balance).
        var byDay: [Date: (net: Int64, granted: Int64, spent: Int64)] = [:]
        var first: Date?
        var balanceNow: Int64 = 0
        try await database.connection(context) { connection in
            for try await (day, net, granted, spent, total, oldest) in try await connection.query(
                """
                WITH a AS (SELECT id, balance FROM user_credits WHERE id = \(balance.accountID)),
                days AS (
                    SELECT date_trunc('day', t.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS day, sum(t.amount)::bigint AS net,
                        coalesce(sum(t.amount) FILTER (WHERE t.amount > 0), 0)::bigint AS granted,
                        coalesce(-sum(t.amount) FILTER (WHERE t.kind = ANY(\(Self.spendKinds))), 0)::bigint AS spent
                    FROM credit_transactions t WHERE t.account_id = \(balance.accountID) AND t.created_at >= \(windowStart) GROUP BY 1)
                SELECT d.day, d.net, d.granted, d.spent, a.balance,
                    (SELECT min(t.created_at) FROM credit_transactions t WHERE t.account_id = a.id)
                FROM a LEFT JOIN days d ON true
                """
            ).decode((Date?, Int64?, Int64?, Int64?, Int64, Date?).self) {
                balanceNow = total
                first = oldest
                if let day, let net, let granted, let spent { byDay[day] = (net, granted, spent) }
            }
        }
        let start = max(windowStart, first.map(Self.utcDay) ?? today)
        var history: [BurnDown.Day] = []
        var day = today
        var balanceAtEnd = balanceNow
        while day >= start {
            let entry = byDay[day] ?? (0, 0, 0)
            history.append(BurnDown.Day(day: day, balance: balanceAtEnd, granted: entry.granted, spent: entry.spent))
            balanceAtEnd -= entry.net
            day = day.addingTimeInterval(-86_400)
        }
        history.reverse()
        let rate = BurnDown.rate(of: history)
        let refills = try await TopUps(database: database).list(on: owner, context: context).map {
            BurnDown.Refill(below: $0.below, grantsAtOnce: $0.action == .grant, amount: $0.amount, topUpTo: $0.topUpTo, maxPerDay: $0.maxPerDay)
        }
        let projection = BurnDown.project(
            available: balance.available, grants: balance.grants.map { .init(remaining: $0.remaining, expiresAt: $0.expiresAt, priority: $0.priority) },
            perDay: rate.perDay, refills: refills, now: now)
        return BurnDown(days: history, spendPerDay: rate.perDay, rateDays: rate.days, available: balance.available, projection: projection)
    }

    /// What each API key spent from the account on each of the last `days` UTC days (today last): the `top` keys
    /// that spent most over them, named, and the others as one. Only keys in `visible` are named (nil: all): a
    /// caller sees the names of the keys it may list, no more.
    public func spendByKey(
        of owner: AccountOwner, visible: Set<UUID>? = nil, days: Int = 30, top: Int = 5, now: Date = Date(), context: QueryContext
    ) async throws -> KeySpend {
        let today = Self.utcDay(now)
        let windowStart = today.addingTimeInterval(-Double(days - 1) * 86_400)
        var rows: [(Date, UUID?, Int64)] = []
        var names: [UUID: (String, String)] = [:]
        try await database.connection(context) { connection in
            for try await (day, key, spent, name, prefix) in try await connection.query(
                """
                SELECT s.day, s.key, s.spent, k.name, k.prefix FROM (
                    SELECT date_trunc('day', t.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS day, t.api_key_id AS key, (-sum(t.amount))::bigint AS spent
                    FROM credit_transactions t JOIN user_credits a ON a.id = t.account_id
                    WHERE a.\(unescaped: owner.column) = \(owner.id) AND t.created_at >= \(windowStart) AND t.kind = ANY(\(Self.spendKinds))
                    GROUP BY 1, 2) s
                LEFT JOIN api_keys k ON k.id = s.key
                """
            ).decode((Date, UUID?, Int64, String?, String?).self) {
                rows.append((day, key, spent))
                if let key, let name, let prefix { names[key] = (name, prefix) }
            }
        }
        var totals: [UUID: Int64] = [:]
        for (_, key, spent) in rows { if let key, visible?.contains(key) ?? true { totals[key, default: 0] += spent } }
        let named = totals.sorted { ($0.value, $1.key.uuidString) > ($1.value, $0.key.uuidString) }.prefix(top).map(\.key)
        var keys = named.map { KeySpend.Key(id: $0, name: names[$0]?.0 ?? "deleted key", prefix: names[$0]?.1, total: totals[$0] ?? 0) }
        let rest = rows.filter { $0.1.map { !named.contains($0) } ?? true }.reduce(Int64(0)) { $0 + $1.2 }
        if rest > 0 { keys.append(KeySpend.Key(id: nil, name: "other keys", prefix: nil, total: rest)) }
        var spendDays: [KeySpend.Day] = []
        var day = windowStart
        while day <= today {
            var spent = Array(repeating: Int64(0), count: keys.count)
            for (when, key, amount) in rows where when == day {
                if let key, let index = named.firstIndex(of: key) { spent[index] += amount } else if rest > 0 { spent[keys.count - 1] += amount }
            }
            spendDays.append(KeySpend.Day(day: day, spent: spent))
            day = day.addingTimeInterval(86_400)
        }
        return KeySpend(keys: keys, days: spendDays)
    }

    /// The start (00:00 UTC) of the day `date` falls in.
    static func utcDay(_ date: Date) -> Date {
        Date(timeIntervalSince1970: (date.timeIntervalSince1970 / 86_400).rounded(.down) * 86_400)
    }
}
