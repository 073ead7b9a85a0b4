import Foundation
import PostgresNIO
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyCredits

/// Recurring grants with an injected clock (`issueDue(now:)`): each period issued once, counted from the anchor in
/// UTC (month ends clamped), the rollover cap, catching up after downtime, and two servers sharing the work.
@Suite struct RecurringGrantTests {
    static let day: TimeInterval = 86_400
    static var utc: Calendar {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar
    }

    /// A user with no credits and a key to spend with.
    func holder(_ client: PostgresClient, _ email: String) async throws -> (owner: AccountOwner, key: APIKeyPrincipal) {
        let user = try await Auth(client: client, bcryptCost: 4).createUser(email: email, password: "password123", name: nil, admin: false, context: testQueries)
        let key = try await APIKeys(client: client).create(name: "k", teamID: nil, creditLimit: nil, by: user, context: testQueries)
        return (.user(user.id), try await APIKeys(client: client).authenticate(key.key, context: testQueries))
    }

    func schedule(_ client: PostgresClient, _ id: UUID, on owner: AccountOwner) async throws -> RecurringGrant {
        try #require(try await RecurringGrants(database: Database(client)).list(on: owner, context: testQueries).first { $0.id == id })
    }

    func balance(_ client: PostgresClient, _ owner: AccountOwner) async throws -> Int64 {
        try await Ledger(client: client).balance(of: owner, context: testQueries).balance
    }

    @Test(.freshDatabase(from: .tally)) func aMonthFromThe31stIsTheLastDayOfShorterMonths() async throws {
        let db = try TestDatabase.current
        try await withPostgresClient(db) { client in
            let (owner, _) = try await holder(client, "m@example.com")
            let recurring = RecurringGrants(database: Database(client))
            let now = Date()
            // The next 31 January at midnight UTC: ahead of now, within a year.
            let year = Self.utc.component(.year, from: now) + 1
            let anchor = try #require(Self.utc.date(from: DateComponents(year: year, month: 1, day: 31)))
            let made = try await recurring.create(
                on: owner, RecurringGrantRequest(amount: 100, every: .month, anchor: anchor, description: "monthly"), by: .operator("test"),
                now: now, context: testQueries)
            #expect(made.nextPeriod == 0 && made.nextAt == anchor && made.periods.isEmpty, "nothing before the anchor: \(made)")
            #expect(try await recurring.issueDue(now: anchor.addingTimeInterval(-1), context: testQueries) == 0)

            // At 11 May: the periods of 31 January, 28 (or 29) February, 31 March and 30 April.
            let issued = try await recurring.issueDue(now: anchor.addingTimeInterval(100 * Self.day), context: testQueries)
            #expect(issued == 4)
            let schedule = try await schedule(client, made.id, on: owner)
            let starts = schedule.periods.sorted { $0.period < $1.period }.map(\.startsAt)
            let days = starts.map { Self.utc.component(.day, from: $0) }
            let lastDays = starts.map { Self.utc.range(of: .day, in: .month, for: $0)!.count }
            #expect(days == lastDays.map { min(31, $0) } && days.count == 4, "each period on the 31st or its month's last day: \(starts)")
            #expect(Set(starts.map { Self.utc.component(.month, from: $0) }) == [1, 2, 3, 4])
            #expect(starts.allSatisfy { Self.utc.component(.hour, from: $0) == 0 && Self.utc.component(.minute, from: $0) == 0 })
            // The fifth is 31 May, counted from the anchor (not from 30 April).
            #expect(schedule.nextPeriod == 4)
            #expect(Self.utc.component(.day, from: schedule.nextAt) == 31 && Self.utc.component(.month, from: schedule.nextAt) == 5, "\(schedule.nextAt)")
            #expect(schedule.periods.allSatisfy { $0.grantID != nil })
            #expect(try await balance(client, owner) == 400)
            #expect(try await Audit.run(client, logger: testQueries.logger).ok)
        }
    }

    @Test(.freshDatabase(from: .tally)) func theRolloverCapKeepsAtMostItOfEarlierPeriodsAndNeverTouchesOtherGrants() async throws {
        let db = try TestDatabase.current
        try await withPostgresClient(db) { client in
            let (owner, key) = try await holder(client, "r@example.com")
            let recurring = RecurringGrants(database: Database(client))
            let now = Date()
            let made = try await recurring.create(
                on: owner, RecurringGrantRequest(amount: 100, every: .day, rolloverMax: 30, description: "daily"), by: .operator("test"),
                now: now, context: testQueries)
            #expect(made.periods.count == 1 && made.periods.first?.grantID != nil, "the period now falls in is issued at once")
            #expect(try await balance(client, owner) == 100)

            // 50 spent; at the next period 50 are left, 30 roll over.
            let spent = try await withSingleConnection(db) { try await Ledger.apply([.consume(ConsumeRequest(apiKey: key, amount: 50))], on: $0) }
            #expect(spent.map(\.kind) == [.ok])
            #expect(try await recurring.issueDue(now: now.addingTimeInterval(Self.day + 1), context: testQueries) == 1)
            #expect(try await balance(client, owner) == 130)

            // A paid grant is never cut; the schedule's 130 are, to 30.
            _ = try await Ledger(client: client).grant(to: owner, amount: 1000, description: "paid", by: .operator("test"), context: testQueries)
            #expect(try await recurring.issueDue(now: now.addingTimeInterval(2 * Self.day + 1), context: testQueries) == 1)
            #expect(try await balance(client, owner) == 1130)

            let periods = try await schedule(client, made.id, on: owner).periods.sorted { $0.period < $1.period }
            #expect(periods.map(\.rolledOver) == [0, 30, 30] && periods.map(\.forfeited) == [0, 20, 100], "\(periods)")
            var cut: [Int64] = []
            for try await amount in try await client.query(
                "SELECT amount FROM credit_transactions WHERE kind = 'expire' AND description LIKE 'rollover cap of 30:%' ORDER BY id"
            ).decode(Int64.self) { cut.append(amount) }
            #expect(cut.reduce(0, +) == -120, "the ledger says what the cap took: \(cut)")
            #expect(try await Audit.run(client, logger: testQueries.logger).ok)
        }
    }

    @Test(.freshDatabase(from: .tally)) func whatCarriesOverIsBetweenTheMinimumAndTheMaximum() async throws {
        let db = try TestDatabase.current
        try await withPostgresClient(db) { client in
            let (owner, key) = try await holder(client, "n@example.com")
            let recurring = RecurringGrants(database: Database(client))
            let now = Date()
            let made = try await recurring.create(
                on: owner, RecurringGrantRequest(amount: 100, every: .week, rolloverMax: 60, rolloverMin: 40, description: "weekly"),
                by: .operator("test"), now: now, context: testQueries)
            #expect(made.rolloverMin == 40 && made.rolloverMax == 60)
            // 90 of 100 spent: 10 left, made up to 40 by the next week's grant of 100 + 30.
            let spent = try await withSingleConnection(db) { try await Ledger.apply([.consume(ConsumeRequest(apiKey: key, amount: 90))], on: $0) }
            #expect(spent.map(\.kind) == [.ok])
            #expect(try await recurring.issueDue(now: now.addingTimeInterval(7 * Self.day + 1), context: testQueries) == 1)
            #expect(try await balance(client, owner) == 140)
            // Nothing spent: 140 left, cut to 60, then 100.
            #expect(try await recurring.issueDue(now: now.addingTimeInterval(14 * Self.day + 1), context: testQueries) == 1)
            #expect(try await balance(client, owner) == 160)
            let periods = try await schedule(client, made.id, on: owner).periods.sorted { $0.period < $1.period }
            #expect(periods.map(\.rolledOver) == [0, 40, 60] && periods.map(\.forfeited) == [0, 0, 80], "\(periods)")
            #expect(try await Audit.run(client, logger: testQueries.logger).ok)
        }
    }

    @Test(.freshDatabase(from: .tally)) func threeMissedPeriodsAreCaughtUpOnceAndOneThatWouldHaveExpiredIsNotGranted() async throws {
        let db = try TestDatabase.current
        try await withPostgresClient(db) { client in
            let (owner, _) = try await holder(client, "c@example.com")
            let recurring = RecurringGrants(database: Database(client))
            let now = Date()
            // Each grant lasts two days.
            let made = try await recurring.create(
                on: owner, RecurringGrantRequest(amount: 10, every: .day, expiresInSeconds: Int64(2 * Self.day), description: "daily"),
                by: .operator("test"), now: now, context: testQueries)
            #expect(made.periods.count == 1)

            // No server ran for three days: periods 1, 2 and 3 are due at once. Period 1's grant would have expired
            // an hour ago, so it is recorded without one; 2 and 3 are granted.
            let later = now.addingTimeInterval(3 * Self.day + 3600)
            #expect(try await recurring.issueDue(now: later, context: testQueries) == 3)
            let periods = try await schedule(client, made.id, on: owner).periods.sorted { $0.period < $1.period }
            #expect(periods.map(\.period) == [0, 1, 2, 3])
            #expect(periods.map { $0.grantID != nil } == [true, false, true, true], "\(periods)")
            for (period, start) in zip(periods, periods.map(\.startsAt)) {
                #expect(abs(start.timeIntervalSince(now) - Double(period.period) * Self.day) < 1, "period \(period.period) starts a day after the one before")
            }
            var expiries: [Date] = []
            for try await expires in try await client.query(
                "SELECT g.expires_at FROM credit_grants g JOIN recurring_grant_periods p ON p.grant_id = g.id ORDER BY p.period"
            ).decode(Date.self) { expiries.append(expires) }
            #expect(zip(expiries, [0.0, 2, 3]).allSatisfy { abs($0.timeIntervalSince(now) - ($1 + 2) * Self.day) < 1 }, "two days after each period's start: \(expiries)")
            // Asked again, and again at the same time: nothing more.
            #expect(try await recurring.issueDue(now: later, context: testQueries) == 0)
            #expect(try await recurring.issueDue(now: later.addingTimeInterval(60), context: testQueries) == 0)
            #expect(try await scalarValue(client, "SELECT count(*) FROM credit_grants") == 3)

            // Ended: nothing more, ever; what it granted stays.
            _ = try await recurring.end(made.id, on: owner, by: .operator("test"), context: testQueries)
            #expect(try await recurring.issueDue(now: later.addingTimeInterval(10 * Self.day), context: testQueries) == 0)
            #expect(try await scalarValue(client, "SELECT count(*) FROM credit_grants") == 3)
            #expect(try await Audit.run(client, logger: testQueries.logger).ok)
        }
    }

    @Test(.freshDatabase(from: .tally)) func twoServersIssueEachPeriodOnce() async throws {
        let db = try TestDatabase.current
        try await withPostgresClient(db) { client in
            let now = Date()
            // Ten accounts with two daily schedules each (so the servers also meet on accounts).
            var owners: [AccountOwner] = []
            for index in 0..<10 {
                let (owner, _) = try await holder(client, "s\(index)@example.com")
                owners.append(owner)
                for amount in [Int64(1), 1000] {
                    _ = try await RecurringGrants(database: Database(client)).create(
                        on: owner, RecurringGrantRequest(amount: amount, every: .day, description: "daily \(amount)"), by: .operator("test"),
                        now: now, context: testQueries)
                }
            }
            // Five days later, two servers (each its own pool) issue, in several rounds at once.
            let later = now.addingTimeInterval(5 * Self.day + 60)
            let issued = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<2 {
                    group.addTask {
                        try await withPostgresClient(db) { server in
                            var issued = 0
                            for _ in 0..<3 { issued += try await RecurringGrants(database: Database(server)).issueDue(now: later, limit: 7, context: testQueries) }
                            return issued
                        }
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(issued.reduce(0, +) == 20 * 5, "each of the 20 schedules' five periods once, between the two: \(issued)")
            #expect(try await scalarValue(client, "SELECT count(*) FROM recurring_grant_periods") == 20 * 6)
            #expect(try await scalarValue(client, "SELECT count(*) FROM credit_grants") == 20 * 6)
            for owner in owners { #expect(try await balance(client, owner) == 6 * 1001) }
            #expect(try await Audit.run(client, logger: testQueries.logger).ok)
        }
    }

    @Test(.freshDatabase(from: .tally)) func badSchedulesAreRefusedWithWhatToDo() async throws {
        let db = try TestDatabase.current
        try await withPostgresClient(db) { client in
            let (owner, _) = try await holder(client, "b@example.com")
            let recurring = RecurringGrants(database: Database(client))
            let now = Date()
            let cases: [(RecurringGrantRequest, String)] = [
                (RecurringGrantRequest(amount: 0, every: .day, description: "x"), "positive"),
                (RecurringGrantRequest(amount: 1, every: .day, anchor: now.addingTimeInterval(-400 * Self.day), description: "x"), "within a year"),
                (RecurringGrantRequest(amount: 1, every: .week, expiresInSeconds: 0, description: "x"), "expires_in_seconds"),
                (RecurringGrantRequest(amount: 1, every: .month, rolloverMax: -1, description: "x"), "rollover_max"),
                (RecurringGrantRequest(amount: 1, every: .month, rolloverMax: 5, rolloverMin: 6, description: "x"), "rollover_min cannot be more"),
            ]
            for (request, says) in cases {
                do {
                    _ = try await recurring.create(on: owner, request, by: .operator("test"), now: now, context: testQueries)
                    Issue.record("accepted \(request)")
                } catch let error as CreditsError {
                    #expect(error.code == .invalidInput && error.message.contains(says), "\(error.message)")
                }
            }
            #expect(try await scalarValue(client, "SELECT count(*) FROM recurring_grants") == 0)
        }
    }
}
