import Foundation
import Synchronization
import Hummingbird
import HummingbirdTesting
import PostgresNIO
import TallyCredits
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyServer

/// PostgreSQL stopped and started again under a spend load, on a cluster of the test's own: every answer is
/// a 200 or a prompt 503, never a 500 or a hang; spends succeed again soon after PostgreSQL is back; every
/// acknowledged spend is in the ledger and the audit passes.
@Suite struct DatabaseOutageTests {
    struct Sample: Sendable {
        var status: Int
        var started: Duration
        var seconds: Double
        var transactionID: Int?
        var problem: String?
    }

    /// The test's clock and the outage's moments, shared by the workers.
    final class Timeline: Sendable {
        private struct Moments {
            var firstSpend: Duration?
            var stopped: Duration?
            var restarted: Duration?
            var done = false
        }
        private let start = ContinuousClock.now
        private let moments = Mutex(Moments())

        var now: Duration { ContinuousClock.now - start }
        var finished: Bool { moments.withLock { $0.done } }
        var stoppedAt: Duration? { moments.withLock { $0.stopped } }
        var restartedAt: Duration? { moments.withLock { $0.restarted } }
        var firstSpendAt: Duration? { moments.withLock { $0.firstSpend } }
        func markSpent() {
            let at = now
            moments.withLock { if $0.firstSpend == nil { $0.firstSpend = at } }
        }
        func markStopped() {
            let at = now
            moments.withLock { $0.stopped = at }
        }
        func markRestarted() {
            let at = now
            moments.withLock { $0.restarted = at }
        }
        func finish() { moments.withLock { $0.done = true } }
    }

    @Test
    func spendsAnswer200Or503PromptlyWhileTheDatabaseIsDownAndRecover() async throws {
        try await TestDatabase.withOwnCluster { cluster, admin in try await outage(cluster, admin) }
    }

    private func outage(_ cluster: LocalCluster, _ admin: ConnectionSettings) async throws {
        try await withSingleConnection(admin) { try await $0.execute("CREATE DATABASE tally_outage") }
        let db = admin.with(database: "tally_outage")
        try await SchemaGate.prepare(db, apply: true)
        let wait = Duration.seconds(2)
        let deadline = 3.0
        let app = buildApplication(ServerSettings(
            host: "127.0.0.1", port: 0, database: db, logLevel: .critical, bcryptCost: 4, databaseWait: wait,
            requestTimeout: .seconds(deadline)))

        try await app.test(.live) { client in
            let (_, _, key) = try await ServerUnderTest.$database.withValue(db) { try await fundedUser(client, db, credits: 1_000_000) }
            let port = try #require(client.port)
            let timeline = Timeline()

            let samples = try await withThrowingTaskGroup(of: [Sample].self) { group in
                for worker in 0..<6 {
                    group.addTask {
                        var samples: [Sample] = []
                        var n = 0
                        while !timeline.finished {
                            n += 1
                            // Half the workers retry-safely with Idempotency-Key (one transaction per request),
                            // half go through the grouped consume path.
                            let headers = worker % 2 == 0 ? ["Idempotency-Key": "w\(worker)-\(n)"] : [:]
                            let started = timeline.now
                            let answer = try await send(port: port, "/v1/credits/consume", token: key, body: ["amount": 1], headers: headers)
                            let seconds = Double((timeline.now - started).components.attoseconds) / 1e18 + Double((timeline.now - started).components.seconds)
                            if answer.status == 200 { timeline.markSpent() }
                            samples.append(Sample(status: answer.status, started: started, seconds: seconds, transactionID: answer.body["transaction_id"] as? Int, problem: answer.body["type"] as? String))
                        }
                        return samples
                    }
                }
                group.addTask {
                    // PostgreSQL stops once spends are flowing (on a loaded machine the first can take a
                    // while), then half a second more of them.
                    while timeline.firstSpendAt == nil, timeline.now < .seconds(60) {
                        try await Task.sleep(for: .milliseconds(50))
                    }
                    try await Task.sleep(for: .milliseconds(500))
                    timeline.markStopped()
                    _ = try await cluster.stop()
                    try await Task.sleep(for: .seconds(15))
                    _ = try await cluster.start()
                    timeline.markRestarted()
                    try await Task.sleep(for: .seconds(3))
                    timeline.finish()
                    return []
                }
                var all: [Sample] = []
                for try await part in group { all += part }
                return all
            }

            let stopped = try #require(timeline.stoppedAt)
            let restarted = try #require(timeline.restartedAt)
            let byStatus = Dictionary(grouping: samples, by: \.status).mapValues(\.count)
            let longest = samples.map(\.seconds).max() ?? 0
            let firstAfter = samples.filter { $0.status == 200 && $0.started >= restarted }.map { $0.started + .milliseconds(Int64($0.seconds * 1000)) }.min()
            let recovery = firstAfter.map { Double(($0 - restarted).components.attoseconds) / 1e18 + Double(($0 - restarted).components.seconds) }
            let problems = Dictionary(grouping: samples.compactMap(\.problem), by: { $0 }).mapValues(\.count)
            print("outage figures: answers by status \(byStatus.sorted { $0.key < $1.key }), problems \(problems.sorted { $0.key < $1.key }), longest \(String(format: "%.2f", longest)) s, first 200 \(recovery.map { String(format: "%.2f", $0) } ?? "never") s after PostgreSQL was back")

            #expect(Set(byStatus.keys).isSubset(of: [200, 503]), "only 200 or 503: \(byStatus)")
            #expect(samples.contains { $0.status == 200 && $0.started < stopped }, "spends succeeded before the outage")
            #expect(samples.contains { $0.status == 503 }, "the outage was seen")
            #expect(longest <= deadline + 1.0, "no answer slower than the request deadline plus 1 s (longest \(longest) s)")
            #expect((recovery ?? .infinity) <= 1.0, "spends succeed within 1 s of PostgreSQL being back (\(String(describing: recovery)) s)")

            let acknowledged = samples.compactMap { $0.status == 200 ? $0.transactionID : nil }
            #expect(!acknowledged.isEmpty)
            let ids = acknowledged.map(String.init).joined(separator: ",")
            let found = try await scalar(db, PostgresQuery(unsafeSQL: "SELECT count(*) FROM credit_transactions WHERE kind = 'consume' AND id IN (\(ids))"))
            #expect(found == Int64(Set(acknowledged).count), "every acknowledged spend is in the ledger")
            let report = try await audit(db)
            #expect(report.ok, "\(report.failures)")
        }
    }
}
