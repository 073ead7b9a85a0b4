import Foundation
import Logging
import Metrics
import PostgresNIO
import ServiceLifecycle
import Synchronization
import TallyPostgres

/// Group commit for the consume path. Spends queue in one of `lanes` lanes, chosen by account, so one
/// account's spends always share a lane and never wait on each other's row locks across lanes. Each lane sends
/// whatever has queued while its previous batch ran as one `tally_consume` statement: one round trip and one
/// commit (one WAL flush) for up to `maximumBatch` spends. An idle lane sends a lone spend at once, so a quiet
/// server adds no delay.
///
/// The lanes are tasks of `run()`, which the application runs as a service; while it does not run (a
/// one-shot command, or once the service group shuts down) `submit` takes nothing and the caller spends on
/// its own. Shutting down, the lanes send what is queued and stop.
final class ConsumeBatcher: Service, Sendable {
    struct Pending: Sendable {
        var request: ConsumeRequest
        /// Resumed with the outcome (never nil: nil is `submit`'s answer when nothing was queued).
        var continuation: CheckedContinuation<SpendOutcome?, any Error>
    }

    struct State {
        var queues: [[Pending]]
        var accepting = false
        var batches = 0
        var spends = 0
    }

    let database: Database
    /// The batches' statements serve several requests at once, so they log to the database's logger, marked
    /// `tally.work=consume-batch`, not to any one request's.
    let logger: Logger
    let lanes: Int
    let maximumBatch: Int
    /// How long a batch waits for a connection (the server's `--database-wait`).
    let databaseWait: Duration
    private let state: Mutex<State>
    /// One wake-up signal per lane: a spend was queued.
    private let signals: [AsyncStream<Void>]
    private let wakers: [AsyncStream<Void>.Continuation]

    init(database: Database, lanes: Int = 4, maximumBatch: Int = 128, databaseWait: Duration = DatabaseWait.standard) {
        self.database = database
        var logger = database.logger
        logger[metadataKey: "tally.work"] = "consume-batch"
        self.logger = logger
        self.lanes = max(1, lanes)
        self.maximumBatch = max(1, maximumBatch)
        self.databaseWait = databaseWait
        self.state = Mutex(State(queues: Array(repeating: [], count: self.lanes)))
        let streams = (0..<self.lanes).map { _ in AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1)) }
        self.signals = streams.map(\.stream)
        self.wakers = streams.map(\.continuation)
    }

    /// Whether the lanes take spends now.
    var isRunning: Bool { state.withLock { $0.accepting } }

    /// How many batches and spends the lanes have sent so far.
    var statistics: (batches: Int, spends: Int) {
        state.withLock { ($0.batches, $0.spends) }
    }

    /// Runs the lanes until the service group shuts down (they send what is queued, then stop) or the task is
    /// cancelled (what is queued then fails as unavailable, so no spend waits forever).
    func run() async {
        state.withLock { $0.accepting = true }
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for lane in 0..<lanes {
                    group.addTask { await self.serve(lane) }
                }
            }
        } onGracefulShutdown: {
            self.state.withLock { $0.accepting = false }
            for waker in self.wakers { waker.finish() }
        }
        let left = state.withLock { state -> [Pending] in
            state.accepting = false
            defer { state.queues = Array(repeating: [], count: lanes) }
            return state.queues.flatMap { $0 }
        }
        for pending in left {
            pending.continuation.resume(throwing: CreditsError(.databaseUnavailable, "the server stopped before the spend was sent; nothing was spent, so retry it"))
        }
    }

    /// Queues `request` in its account's lane and waits for its batch; nil when the lanes do not run.
    func submit(_ request: ConsumeRequest) async throws -> SpendOutcome? {
        let lane = Int(UInt(bitPattern: request.apiKey.account.hashValue) % UInt(lanes))
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<SpendOutcome?, any Error>) in
            let queued = state.withLock { state -> Bool in
                guard state.accepting else { return false }
                state.queues[lane].append(Pending(request: request, continuation: continuation))
                return true
            }
            if queued { wakers[lane].yield() } else { continuation.resume(returning: nil) }
        }
    }

    /// `tally_consume_batch_size`: spends per statement, the measure of how much grouping happens.
    private let batchSize = Recorder(label: "tally_consume_batch_size")

    /// One lane: on each wake-up, sends what has queued, a batch at a time; when the signals end, what is left.
    private func serve(_ lane: Int) async {
        await DatabaseWait.$limit.withValue(databaseWait) {
            for await _ in signals[lane] { await drain(lane) }
            await drain(lane)
        }
    }

    private func drain(_ lane: Int) async {
        while true {
            let batch = next(lane)
            if batch.isEmpty { return }
            batchSize.record(batch.count)
            await send(batch, lane: lane)
        }
    }

    private func next(_ lane: Int) -> [Pending] {
        state.withLock { state in
            let batch = Array(state.queues[lane].prefix(maximumBatch))
            state.queues[lane].removeFirst(batch.count)
            if !batch.isEmpty {
                state.batches += 1
                state.spends += batch.count
            }
            return batch
        }
    }

    /// Everything queued in `lane`, removed from it.
    private func takeAll(_ lane: Int) -> [Pending] {
        state.withLock { state in
            defer { state.queues[lane].removeAll() }
            return state.queues[lane]
        }
    }

    private func send(_ batch: [Pending], lane: Int) async {
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
