import Foundation
import Logging
import Metrics
import PostgresNIO
import TallyPostgres

/// Group commit for the consume path. Spends queue in one of `lanes` lanes, chosen by account, so one
/// account's spends always share a lane and never wait on each other's row locks across lanes. Each lane sends
/// whatever has queued while its previous batch ran as one `tally_consume` statement: one round trip and one
/// commit (one WAL flush) for up to `maximumBatch` spends. An idle lane sends a lone spend at once, so a quiet
/// server adds no delay.
final class ConsumeBatcher: @unchecked Sendable {
    struct Pending {
        var request: ConsumeRequest
        var continuation: CheckedContinuation<SpendOutcome, any Error>
    }

    let database: Database
    /// The batches' statements serve several requests at once, so they log to the database's logger, marked
    /// `tally.work=consume-batch`, not to any one request's.
    let logger: Logger
    let lanes: Int
    let maximumBatch: Int
    private let lock = NSLock()
    private var queues: [[Pending]]
    private var draining: [Bool]
    private var sent = (batches: 0, spends: 0)

    /// How many batches and spends the lanes have sent so far.
    var statistics: (batches: Int, spends: Int) {
        lock.lock()
        defer { lock.unlock() }
        return sent
    }

    init(database: Database, lanes: Int = 4, maximumBatch: Int = 128) {
        self.database = database
        var logger = database.logger
        logger[metadataKey: "tally.work"] = "consume-batch"
        self.logger = logger
        self.lanes = max(1, lanes)
        self.maximumBatch = max(1, maximumBatch)
        self.queues = Array(repeating: [], count: self.lanes)
        self.draining = Array(repeating: false, count: self.lanes)
    }

    func submit(_ request: ConsumeRequest) async throws -> SpendOutcome {
        let lane = Int(UInt(bitPattern: request.apiKey.account.hashValue) % UInt(lanes))
        return try await withCheckedThrowingContinuation { continuation in
            lock.lock()
            queues[lane].append(Pending(request: request, continuation: continuation))
            let start = !draining[lane]
            draining[lane] = true
            lock.unlock()
            if start {
                Task { await self.drain(lane) }
            }
        }
    }

    private func next(_ lane: Int) -> [Pending] {
        lock.lock()
        defer { lock.unlock() }
        let batch = Array(queues[lane].prefix(maximumBatch))
        queues[lane].removeFirst(batch.count)
        if batch.isEmpty {
            draining[lane] = false
        } else {
            sent.batches += 1
            sent.spends += batch.count
        }
        return batch
    }

    /// `tally_consume_batch_size`: spends per statement, the measure of how much grouping happens.
    private let batchSize = Recorder(label: "tally_consume_batch_size")

    private func drain(_ lane: Int) async {
        while true {
            let batch = next(lane)
            if batch.isEmpty { return }
            batchSize.record(batch.count)
            await run(batch, lane: lane)
        }
    }

    /// Everything queued in `lane`, removed from it.
    private func takeAll(_ lane: Int) -> [Pending] {
        lock.lock()
        defer { lock.unlock() }
        let all = queues[lane]
        queues[lane].removeAll()
        return all
    }

    private func run(_ batch: [Pending], lane: Int) async {
        do {
            let requests = batch.map(\.request)
            let outcomes = try await database.leased(logger: logger) { connection in try await Ledger.spend(requests, on: connection) }
            for (pending, outcome) in zip(batch, outcomes) { pending.continuation.resume(returning: outcome) }
        } catch let error as CreditsError where error.code == .databaseUnavailable {
            // The spends queued meanwhile would wait as long again: they fail now too, so no spend waits
            // for a connection longer than the limit once.
            for pending in batch + takeAll(lane) { pending.continuation.resume(throwing: error) }
        } catch let error as PSQLError where error.serverInfo != nil && batch.count > 1 && !DatabaseFailure.isConnectionLoss(error) {
            // The server refused the statement, so the whole batch was rolled back: run each spend alone, so
            // only the one at fault fails. (A connection lost mid-statement is not retried: the batch may
            // have committed.)
            for pending in batch {
                do {
                    let request = pending.request
                    let outcome = try await database.leased(logger: logger) { connection in try await Ledger.spend([request], on: connection) }
                    pending.continuation.resume(returning: outcome[0])
                } catch {
                    pending.continuation.resume(throwing: error)
                }
            }
        } catch {
            for pending in batch { pending.continuation.resume(throwing: error) }
        }
    }
}
