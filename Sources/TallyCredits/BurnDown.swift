import Foundation

/// An account's balance over the last days, its spend rate, and the day its available credits reach zero at
/// that rate: grants expiring on the way are taken into account (what is left of them leaves at their expiry), and
/// so are top-up rules that grant at once (which keep it from running out). The portal's chart and
/// `GET /v1/credits/burndown` show the same value.
public struct BurnDown: Sendable, Codable, Equatable {
    /// One UTC day of the account's history.
    public struct Day: Sendable, Codable, Equatable {
        /// The day's start (00:00 UTC).
        public var day: Date
        /// The balance at the day's end (for today: now).
        public var balance: Int64
        /// Credits granted that day (grants and top-ups) and spent (spends and captures).
        public var granted: Int64
        public var spent: Int64
    }

    /// Where the available credits go at the current rate.
    public struct Projection: Sendable, Codable, Equatable {
        /// The moment they reach zero, or nil when that is more than `horizonDays` away (or never).
        public var runsOutAt: Date?
        /// Why there is no day: "no spending", "topped up automatically", "more than a year".
        public var reason: String?
        /// Credits that will expire unspent on the way.
        public var expiring: Int64
        /// When a top-up rule that asks the product (action `request`) will first fire.
        public var topUpRequestedAt: Date?
        /// The projected available credits at the end of each day ahead (today first), up to the day they run out
        /// (or the horizon), for the chart's dashed line.
        public var path: [Int64]

        enum CodingKeys: String, CodingKey {
            case reason, expiring, path
            case runsOutAt = "runs_out_at"
            case topUpRequestedAt = "topup_requested_at"
        }
    }

    /// What the projection needs of a grant.
    public struct GrantLeft: Sendable, Equatable {
        public var remaining: Int64
        public var expiresAt: Date?
        public var priority: Int

        public init(remaining: Int64, expiresAt: Date?, priority: Int = 0) {
            self.remaining = remaining
            self.expiresAt = expiresAt
            self.priority = priority
        }
    }

    /// What the projection needs of a top-up rule.
    public struct Refill: Sendable, Equatable {
        public var below: Int64
        /// Granted at once (`grant`) or asked of the product (`request`, which the projection does not count on).
        public var grantsAtOnce: Bool
        public var amount: Int64?
        public var topUpTo: Int64?
        public var maxPerDay: Int

        public init(below: Int64, grantsAtOnce: Bool, amount: Int64? = nil, topUpTo: Int64? = nil, maxPerDay: Int = 5) {
            self.below = below
            self.grantsAtOnce = grantsAtOnce
            self.amount = amount
            self.topUpTo = topUpTo
            self.maxPerDay = maxPerDay
        }
    }

    public var days: [Day]
    /// Credits spent per day, averaged over the last `rateDays` days of the history (fewer when the account is
    /// younger).
    public var spendPerDay: Double
    public var rateDays: Int
    public var available: Int64
    public var projection: Projection

    public static let horizonDays = 366

    enum CodingKeys: String, CodingKey {
        case days, available, projection
        case spendPerDay = "spend_per_day"
        case rateDays = "rate_days"
    }

    /// Where `available` credits go when `perDay` are spent each day from `now`, burning grants as spends do
    /// (lowest priority, then soonest expiry, first), what is left of a grant leaving at its expiry, and rules that
    /// grant at once topping up (at most their `maxPerDay` a day). Simulated hour by hour, for `horizonDays`.
    public static func project(available: Int64, grants: [GrantLeft], perDay: Double, refills: [Refill] = [], now: Date) -> Projection {
        // The credits as pools in burn order. Held credits (available below the grants' total) come off first, as
        // their spend would; credits no grant covers never expire.
        var pools = grants.filter { $0.remaining > 0 }
            .sorted { ($0.priority, $0.expiresAt ?? .distantFuture) < ($1.priority, $1.expiresAt ?? .distantFuture) }
            .map { (left: Double($0.remaining), expiresAt: $0.expiresAt) }
        let covered = pools.reduce(0) { $0 + $1.left }
        if Double(available) > covered { pools.append((Double(available) - covered, nil)) }
        var unheld = covered - Double(max(available, 0))
        for index in pools.indices where unheld > 0 {
            let take = min(pools[index].left, unheld)
            pools[index].left -= take
            unheld -= take
        }
        func total() -> Double { pools.reduce(0) { $0 + $1.left } }

        let step = 3600.0
        let perStep = perDay / 24
        var path: [Int64] = []
        var expiring = 0.0
        var requestedAt: Date?
        var refillsToday: [Int] = Array(repeating: 0, count: refills.count)
        for hour in 0...(horizonDays * 24) {
            let at = now.addingTimeInterval(Double(hour) * step)
            if hour > 0 {
                // Spend, in burn order.
                var due = perStep
                for index in pools.indices where due > 0 {
                    let take = min(pools[index].left, due)
                    pools[index].left -= take
                    due -= take
                }
                // Expiry takes what is left of grants past their time.
                for index in pools.indices {
                    if let expires = pools[index].expiresAt, expires <= at, pools[index].left > 0 {
                        expiring += pools[index].left
                        pools[index].left = 0
                    }
                }
            }
            if hour % 24 == 0 { refillsToday = refillsToday.map { _ in 0 } }
            for (index, refill) in refills.enumerated() where total() < Double(refill.below) {
                if refill.grantsAtOnce {
                    guard refillsToday[index] < refill.maxPerDay else { continue }
                    refillsToday[index] += 1
                    let amount = refill.amount.map(Double.init) ?? (Double(refill.topUpTo ?? 0) - total())
                    pools.append((max(amount, 0), nil))
                } else if requestedAt == nil {
                    requestedAt = at
                }
            }
            if hour % 24 == 0 { path.append(Int64(total().rounded(.down))) }
            if total() <= 0.000_001 {
                if hour % 24 != 0 { path.append(0) }
                return Projection(runsOutAt: at, reason: nil, expiring: Int64(expiring.rounded()), topUpRequestedAt: requestedAt, path: path)
            }
        }
        let reason: String
        if perDay <= 0 {
            reason = "no spending"
        } else if refills.contains(where: \.grantsAtOnce) {
            reason = "topped up automatically"
        } else {
            reason = "more than a year"
        }
        return Projection(runsOutAt: nil, reason: reason, expiring: Int64(expiring.rounded()), topUpRequestedAt: requestedAt, path: path)
    }

    /// Credits spent per day over the last `window` days of `days` (the newest last), counting only the days the
    /// account existed; and how many days that was.
    public static func rate(of days: [Day], window: Int = 7) -> (perDay: Double, days: Int) {
        let recent = days.suffix(window)
        guard !recent.isEmpty else { return (0, 0) }
        let spent = recent.reduce(Int64(0)) { $0 + $1.spent }
        return (Double(spent) / Double(recent.count), recent.count)
    }
}
