import Foundation
import Testing
@testable import TallyCredits

/// The day the credits run out, as the portal and `GET /v1/credits/burndown` show it.
@Suite struct BurnDownTests {
    static let day: TimeInterval = 86_400
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func days(after date: Date?) -> Double? { date.map { $0.timeIntervalSince(now) / Self.day } }

    @Test func aSteadySpendRunsOutWhenTheCreditsDo() {
        let projection = BurnDown.project(available: 1000, grants: [.init(remaining: 1000, expiresAt: nil)], perDay: 100, now: now)
        let after = try! #require(days(after: projection.runsOutAt))
        #expect(abs(after - 10) <= 1.0 / 24, "1000 credits at 100 a day: ten days, to the hour (\(after))")
        #expect(projection.reason == nil && projection.expiring == 0)
        #expect(projection.path.first == 1000 && projection.path.last == 0 && projection.path.count == 11, "\(projection.path)")
        #expect(zip(projection.path, projection.path.dropFirst()).allSatisfy { $0 - $1 == 100 || $1 == 0 })
    }

    @Test func noSpendingNeverRunsOut() {
        let projection = BurnDown.project(available: 50, grants: [.init(remaining: 50, expiresAt: nil)], perDay: 0, now: now)
        #expect(projection.runsOutAt == nil && projection.reason == "no spending")
        #expect(projection.path.count == BurnDown.horizonDays + 1 && Set(projection.path) == [50])
        // A slow enough spend is "more than a year".
        let slow = BurnDown.project(available: 1000, grants: [], perDay: 1, now: now)
        #expect(slow.runsOutAt == nil && slow.reason == "more than a year")
        // Nothing left is nothing left, now.
        #expect(BurnDown.project(available: 0, grants: [], perDay: 0, now: now).runsOutAt == now)
    }

    @Test func aGrantExpiringBeforeZeroBringsTheDayCloser() {
        // 500 that never expire and 500 that expire in 3 days; spends burn the expiring ones first (soonest expiry).
        let grants: [BurnDown.GrantLeft] = [.init(remaining: 500, expiresAt: nil), .init(remaining: 500, expiresAt: now.addingTimeInterval(3 * Self.day))]
        let projection = BurnDown.project(available: 1000, grants: grants, perDay: 100, now: now)
        // Three days burn 300 of the expiring grant; its other 200 leave at its expiry; 500 last five more days.
        #expect(projection.expiring == 200, "\(projection.expiring)")
        let after = try! #require(days(after: projection.runsOutAt))
        #expect(abs(after - 8) <= 1.0 / 24, "\(after)")
        // With the lower priority on the lasting grant, it burns first, and the expiring one loses more.
        let other = BurnDown.project(
            available: 1000, grants: [.init(remaining: 500, expiresAt: nil, priority: -1), .init(remaining: 500, expiresAt: now.addingTimeInterval(3 * Self.day))],
            perDay: 100, now: now)
        #expect(other.expiring == 500 && abs((days(after: other.runsOutAt) ?? 0) - 5) <= 1.0 / 24)
        // Held credits are not there to spend: 1000 in grants, 400 held, 600 available.
        let held = BurnDown.project(available: 600, grants: [.init(remaining: 1000, expiresAt: nil)], perDay: 100, now: now)
        #expect(abs((days(after: held.runsOutAt) ?? 0) - 6) <= 1.0 / 24)
    }

    @Test func aTopUpRuleThatGrantsKeepsItFromRunningOutAndOneThatAsksSaysWhen() {
        let grants: [BurnDown.GrantLeft] = [.init(remaining: 1000, expiresAt: nil)]
        let granting = BurnDown.project(
            available: 1000, grants: grants, perDay: 100, refills: [.init(below: 200, grantsAtOnce: true, topUpTo: 1000)], now: now)
        #expect(granting.runsOutAt == nil && granting.reason == "topped up automatically")
        #expect(granting.path.min()! >= 100 && granting.path.max()! <= 1000, "between the line and the top: \(granting.path.prefix(20))")
        // Capped at one a day, 100 a day against a top-up of 50: it still runs out.
        let capped = BurnDown.project(
            available: 300, grants: [.init(remaining: 300, expiresAt: nil)], perDay: 100,
            refills: [.init(below: 200, grantsAtOnce: true, amount: 50, maxPerDay: 1)], now: now)
        let cappedAfter = try! #require(days(after: capped.runsOutAt))
        #expect(cappedAfter > 3 && cappedAfter < 7, "\(cappedAfter)")
        // A rule that asks the product is not counted on, but its first request is shown.
        let asking = BurnDown.project(
            available: 1000, grants: grants, perDay: 100, refills: [.init(below: 200, grantsAtOnce: false, amount: 1000)], now: now)
        #expect(abs((days(after: asking.runsOutAt) ?? 0) - 10) <= 1.0 / 24)
        let requested = try! #require(days(after: asking.topUpRequestedAt))
        #expect(abs(requested - 8) <= 1.0 / 24, "below 200 after eight days: \(requested)")
    }

    @Test func theRateIsTheLastWeeksAverage() {
        let history = (0..<30).map { BurnDown.Day(day: now.addingTimeInterval(Double($0 - 29) * Self.day), balance: 0, granted: 0, spent: $0 < 23 ? 1000 : 70) }
        let rate = BurnDown.rate(of: history)
        #expect(rate.days == 7 && rate.perDay == 70)
        #expect(BurnDown.rate(of: Array(history.suffix(3))).days == 3)
        #expect(BurnDown.rate(of: []).perDay == 0)
    }
}
