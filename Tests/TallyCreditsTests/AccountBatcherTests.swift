import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyCredits

@Suite struct AccountBatcherTests {
    @Test(.freshDatabase(from: .tally)) func concurrentSpendsShareBatches() async throws {
        let db = try TestDatabase.current
        try await withPostgresClient(db, maximumConnections: 8) { client in
            let key = try await funded(client, "a@example.com", credits: 1000)
            let ledger = Ledger(client: client, consumeLanes: 1)
            let results = try await withRunning(ledger) { try await withThrowingTaskGroup(of: ConsumeResult.self) { group in
                for _ in 0..<60 { group.addTask { try await ledger.consume(ConsumeRequest(apiKey: key, amount: 2), context: testQueries) } }
                var all: [ConsumeResult] = []
                for try await result in group { all.append(result) }
                return all
            } }
            #expect(results.count == 60)
            #expect(Set(results.map(\.transactionID)).count == 60)
            #expect(results.map(\.balance).sorted() == Array(stride(from: 880, to: 1000, by: 2)).map(Int64.init))
            let sent = ledger.batcher.statistics
            #expect(sent.operations == 60)
            #expect(sent.batches < 60, "spends that arrive together go in one statement (\(sent.batches) batches)")
            let report = try await Audit.run(client, logger: testQueries.logger)
            #expect(report.ok, "\(report.failures)")
        }
    }

    @Test(.freshDatabase(from: .tally)) func aFailingSpendDoesNotFailItsBatch() async throws {
        let db = try TestDatabase.current
        try await withPostgresClient(db, maximumConnections: 8) { client in
            let healthy = try await funded(client, "healthy@example.com", credits: 1000)
            let broken = try await funded(client, "broken@example.com", credits: 100)
            // The broken account's balance claims more than its grants hold: spending past them raises in
            // tally_apply, which rolls back the whole statement.
            try await client.withConnection { try await $0.execute("UPDATE user_credits SET balance = 500 WHERE user_id = \(broken.userID)", logger: testQueries.logger) }
            let ledger = Ledger(client: client, consumeLanes: 1)
            let outcomes = try await withRunning(ledger) { await withTaskGroup(of: (Bool, Result<ConsumeResult, any Error>).self) { group in
                for n in 0..<40 {
                    let isBroken = n % 10 == 5
                    group.addTask {
                        do {
                            return (isBroken, .success(try await ledger.consume(ConsumeRequest(apiKey: isBroken ? broken : healthy, amount: isBroken ? 300 : 1), context: testQueries)))
                        } catch {
                            return (isBroken, .failure(error))
                        }
                    }
                }
                var all: [(Bool, Result<ConsumeResult, any Error>)] = []
                for await outcome in group { all.append(outcome) }
                return all
            } }
            #expect(ledger.batcher.statistics.batches < 40, "the spends were batched, so broken ones shared batches with healthy ones")
            let healthyOutcomes = outcomes.filter { !$0.0 }.map(\.1)
            let brokenOutcomes = outcomes.filter(\.0).map(\.1)
            #expect(healthyOutcomes.allSatisfy { if case .success = $0 { true } else { false } }, "every healthy spend succeeds")
            #expect(brokenOutcomes.allSatisfy { if case .failure = $0 { true } else { false } }, "the broken account's spends fail")
            #expect(try await scalarValue(client, "SELECT balance FROM user_credits WHERE user_id = \(healthy.userID)") == 964)
            #expect(try await scalarValue(client, "SELECT count(*) FROM credit_transactions WHERE kind = 'consume'") == 36)
        }
    }

    /// Shutting down, the lanes send every spend already queued (none is lost or left waiting); afterwards a
    /// spend is sent alone, as in a one-shot command, and still lands.
    @Test(.freshDatabase(from: .tally)) func shuttingDownSendsWhatIsQueuedThenSpendsGoAlone() async throws {
        let db = try TestDatabase.current
        try await withPostgresClient(db, maximumConnections: 8) { client in
            let key = try await funded(client, "s@example.com", credits: 1000)
            let ledger = Ledger(client: client, consumeLanes: 2)
            let services = ServiceGroup(configuration: .init(services: [ledger], logger: testQueries.logger))
            let results = try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await services.run() }
                try await waitUntilRunning(ledger)
                let spends = Task {
                    try await withThrowingTaskGroup(of: ConsumeResult.self) { spends in
                        for _ in 0..<40 { spends.addTask { try await ledger.consume(ConsumeRequest(apiKey: key, amount: 1), context: testQueries) } }
                        var all: [ConsumeResult] = []
                        for try await result in spends { all.append(result) }
                        return all
                    }
                }
                // Shut down while spends are queued: they are sent, not dropped.
                while ledger.batcher.statistics.operations == 0 { await Task.yield() }
                await services.triggerGracefulShutdown()
                let results = try await spends.value
                try await group.waitForAll()
                return results
            }
            #expect(results.count == 40)
            #expect(!ledger.batcher.isRunning)
            let after = ledger.batcher.statistics.operations
            let late = try await ledger.consume(ConsumeRequest(apiKey: key, amount: 5), context: testQueries)
            #expect(late.balance == 955)
            #expect(ledger.batcher.statistics.operations == after, "after shutdown a spend goes alone, not through a lane")
            #expect(try await scalarValue(client, "SELECT count(*) FROM credit_transactions WHERE kind = 'consume'") == 41)
            #expect(try await Audit.run(client, logger: testQueries.logger).ok)
        }
    }
}
