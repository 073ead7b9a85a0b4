import Foundation
import Logging
import Metrics
import PostgresNIO
import ServiceLifecycle
import Synchronization
import TallyPostgres

/// Group commit for the operations made with API keys (spends, holds, captures, releases), combined per
/// account. Operations queue per account, in arrival order; each of `lanes` workers (each on its own
/// connection) takes whatever has queued for accounts no other worker is sending, up to `maximumBatch`
/// operations, and sends it as one `tally_apply` call, which locks each account once and decides its
/// operations together: one round trip and one commit (one WAL flush) for the batch. An account's operations
/// are in one batch at a time, so they keep their order; how many accounts are in flight is not capped by the
/// number of workers. An idle worker sends a lone operation at once, so a quiet server adds no delay.
///
/// The workers are tasks of `run()`, which the application runs as a service; while it does not run (a
/// one-shot command, or once the service group shuts down) `submit` takes nothing and the caller applies its
/// operation on its own. Shutting down, the workers send what is queued and stop.
///
/// The batcher only queues and groups: what sending a batch means is the `send` function it is given
/// (`Ledger.send`: one `tally_apply` call on a leased connection).
final class AccountBatcher: Service, Sendable {
    /// Sends a batch; one result per operation, in order. A thrown error fails the whole batch (and, when it
    /// says the database is unavailable, every operation waiting too).
    typealias Send = @Sendable ([BatchedOperation]) async throws -> [Result<OperationOutcome, any Error>]

    struct Pending: Sendable {
        var operation: BatchedOperation
        /// Resumed with the outcome (never nil: nil is `submit`'s answer when nothing was queued).
        var continuation: CheckedContinuation<OperationOutcome?, any Error>
    }

    struct State {
        var accepting = false
        /// Spends waiting, per account, in arrival order.
        var waiting: [AccountOwner: [Pending]] = [:]
        /// Accounts with operations waiting and none being sent, in the order they became so.
        var ready: [AccountOwner] = []
        /// Accounts whose operations a worker is sending.
        var inFlight: Set<AccountOwner> = []
        /// Workers waiting for work.
        var idle: [Int] = []
        var batches = 0
        var operations = 0
    }

    let send: Send
    let lanes: Int
    let maximumBatch: Int
    private let state = Mutex(State())
    /// One wake-up signal per worker.
    private let signals: [AsyncStream<Void>]
    private let wakers: [AsyncStream<Void>.Continuation]

    init(lanes: Int = 4, maximumBatch: Int = 128, send: @escaping Send) {
        self.send = send
        self.lanes = max(1, lanes)
        self.maximumBatch = max(1, maximumBatch)
        let streams = (0..<self.lanes).map { _ in AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1)) }
        self.signals = streams.map(\.stream)
        self.wakers = streams.map(\.continuation)
    }

    /// Whether the workers take operations now.
    var isRunning: Bool { state.withLock { $0.accepting } }

    /// How many batches and operations the workers have sent so far.
    var statistics: (batches: Int, operations: Int) {
        state.withLock { ($0.batches, $0.operations) }
    }

    /// Runs the workers until the service group shuts down (they send what is queued, then stop) or the task
    /// is cancelled (what is queued then fails as unavailable, so nothing waits forever).
    func run() async {
        state.withLock { $0.accepting = true }
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for worker in 0..<lanes {
                    group.addTask { await self.serve(worker) }
                }
            }
        } onGracefulShutdown: {
            self.state.withLock { $0.accepting = false }
            for waker in self.wakers { waker.finish() }
        }
        state.withLock { $0.accepting = false }
        for pending in takeAllWaiting() {
            pending.continuation.resume(throwing: CreditsError(.databaseUnavailable, "the server stopped before the request was sent to the database; nothing was done, so retry it"))
        }
    }

    /// Queues `operation` behind its account's earlier ones and waits for its batch; nil when the workers do
    /// not run.
    func submit(_ operation: BatchedOperation) async throws -> OperationOutcome? {
        let account = operation.operation.key.account
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<OperationOutcome?, any Error>) in
            let wake = state.withLock { state -> Int?? in
                guard state.accepting else { return .none }
                state.waiting[account, default: []].append(Pending(operation: operation, continuation: continuation))
                if state.waiting[account]?.count == 1, !state.inFlight.contains(account) { state.ready.append(account) }
                return .some(state.idle.popLast())
            }
            switch wake {
            case .none: continuation.resume(returning: nil)
            case .some(let worker?): wakers[worker].yield()
            case .some(nil): break
            }
        }
    }

    /// `tally_consume_batch_size`: operations per statement, the measure of how much grouping happens (the name
    /// predates holds joining the batches, and dashboards know it).
    private let batchSize = Recorder(label: "tally_consume_batch_size")

    /// One worker: sends batches while there are any, then waits to be woken; when the signals end (shutting
    /// down), sends what is left and stops.
    private func serve(_ worker: Int) async {
        var signals = self.signals[worker].makeAsyncIterator()
        var stopping = false
        while true {
            let batch = take(for: worker)
            if batch.isEmpty {
                // Once the signals end, what is left is sent and the worker stops.
                if stopping { return }
                stopping = await signals.next() == nil
                continue
            }
            batchSize.record(batch.count)
            await deliver(batch)
            finish(batch)
        }
    }

    /// Up to `maximumBatch` operations of accounts that are ready, whole accounts first, marked in flight; when
    /// there are none, `worker` is noted as idle.
    private func take(for worker: Int) -> [Pending] {
        state.withLock { state in
            var batch: [Pending] = []
            while batch.count < maximumBatch, !state.ready.isEmpty {
                let account = state.ready.removeFirst()
                var queue = state.waiting.removeValue(forKey: account) ?? []
                let room = maximumBatch - batch.count
                if queue.count > room {
                    batch += queue.prefix(room)
                    queue.removeFirst(room)
                    state.waiting[account] = queue
                } else {
                    batch += queue
                }
                state.inFlight.insert(account)
            }
            if batch.isEmpty {
                if !state.idle.contains(worker) { state.idle.append(worker) }
            } else {
                state.batches += 1
                state.operations += batch.count
            }
            return batch
        }
    }

    /// The batch's accounts are no longer in flight: those with operations waiting are ready again, and an idle
    /// worker is woken for them.
    private func finish(_ batch: [Pending]) {
        let wake = state.withLock { state -> Int? in
            for account in Set(batch.map(\.operation.operation.key.account)) {
                state.inFlight.remove(account)
                if state.waiting[account]?.isEmpty == false { state.ready.append(account) }
            }
            return state.ready.isEmpty ? nil : state.idle.popLast()
        }
        if let wake { wakers[wake].yield() }
    }

    /// Every operation waiting, removed from the queues.
    private func takeAllWaiting() -> [Pending] {
        state.withLock { state in
            defer { state.waiting = [:]; state.ready = [] }
            return state.waiting.values.flatMap { $0 }
        }
    }

    /// Sends `batch` and resumes each operation's caller with its result.
    private func deliver(_ batch: [Pending]) async {
        do {
            let results = try await send(batch.map(\.operation))
            for (index, pending) in batch.enumerated() {
                pending.continuation.resume(with: results.indices.contains(index)
                    ? results[index].map { Optional($0) }
                    : .failure(CreditsError(.conflict, "the batch answered no outcome for this operation; retry it")))
            }
        } catch let error as TallyPostgresError where error.code == .databaseUnavailable {
            // The operations queued meanwhile would wait as long again: they fail now too, so none waits
            // for a connection longer than the limit once.
            for pending in batch + takeAllWaiting() { pending.continuation.resume(throwing: error) }
        } catch {
            for pending in batch { pending.continuation.resume(throwing: error) }
        }
    }
}
