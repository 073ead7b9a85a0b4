import Foundation
import Synchronization
import Hummingbird
import Logging
import Metrics
import NIOCore
import TallyPostgres

/// Every request is answered within `limit`. The body is read first, under the deadline (a client that sends
/// it too slowly gets `408` and the connection is closed; over 1 MiB is `413`); then the routes run in a task of their own, and
/// when they have not answered by the deadline the client gets `503` with `Retry-After` at once, while the
/// work is cancelled (a statement already sent to PostgreSQL finishes or fails there; a request with an
/// `Idempotency-Key` commits its answer with its effects, so a retry learns what happened).
///
/// The deadlines wait in one shared queue (`Deadline`), not in a sleeping task each: a request that answers in
/// time costs an entry in that queue, flagged cancelled, and the one task that lets the answer go out at the
/// deadline while work that ignores its cancellation goes on.
struct DeadlineResponder<Inner: HTTPResponder>: HTTPResponder where Inner.Context: Sendable {
    typealias Context = Inner.Context

    let inner: Inner
    /// nil: no deadline at all (only to measure what it costs).
    let limit: Duration?
    let logger: Logger
    private let exceeded = Counter(label: "tally_http_request_deadline_exceeded_total")

    init(_ inner: Inner, limit: Duration?, logger: Logger) {
        self.inner = inner
        self.limit = limit
        self.logger = logger
    }

    func respond(to request: Request, context: Context) async throws -> Response {
        guard let limit else { return try await inner.respond(to: request, context: context) }
        let started = ContinuousClock.now
        var request = request
        let body: ByteBuffer
        do {
            body = try await Self.collect(request, by: Deadline.Due(started + limit, limit: limit))
        } catch is TimeoutError {
            // The body's stream was cancelled, which ends the connection's input: it closes after this answer.
            exceeded.increment()
            return Self.problem(.requestTimeout, type: "request-timeout", title: "Request Timeout",
                                detail: "the request body did not arrive within \(limit); nothing was done", close: true)
        } catch {
            // The server reads and drops the rest of the body; the connection stays usable.
            return Self.answer(Problem.bodyTooLarge, close: false)
        }
        request.body = RequestBody(buffer: body)
        do {
            return try await Self.first(by: Deadline.Due(started + limit, limit: limit)) { [inner, request] in try await inner.respond(to: request, context: context) }
        } catch is DeadlinePassed {
            exceeded.increment()
            logger.warning("request answered 503 at its deadline; its work was cancelled", metadata: [
                "method": "\(request.method)", "path": "\(request.uri.path)", "deadline": "\(limit)",
            ])
            return Self.problem(.serviceUnavailable, type: "request-timeout", title: "Service Unavailable",
                                detail: "the request did not finish within \(limit) (the database may be slow or restarting), so it may or may not have taken effect; retrying with the same Idempotency-Key is safe (it gives the first outcome, or runs once)",
                                close: false)
        }
    }

    static func problem(_ status: HTTPResponse.Status, type: String, title: String, detail: String, close: Bool) -> Response {
        answer(Problem(status, type: type, title: title, detail: detail), close: close)
    }

    /// `problem` with `Retry-After: 1`, closing the connection after it when `close`.
    static func answer(_ problem: Problem, close: Bool) -> Response {
        var problem = problem
        problem.retryAfter = 1
        var response = problem.response
        if close { response.headers[.connection] = "close" }
        return response
    }

    /// The whole body, or `TimeoutError`. Unlike the routes, reading it stops when cancelled, and it must
    /// have stopped before the server reads the connection again, so it is read in a child task that is waited
    /// for. A request that declares no body (neither Content-Length nor Transfer-Encoding) has none to read.
    static func collect(_ request: Request, by due: Deadline.Due) async throws -> ByteBuffer {
        guard request.headers[.contentLength] != nil || request.headers[.transferEncoding] != nil else { return ByteBuffer() }
        let body = request.body
        let reading = Task { try await body.collect(upTo: Request.maximumBody) }
        let passed = Atomic<Bool>(false)
        let deadline = Deadline(due) {
            passed.store(true, ordering: .relaxed)
            reading.cancel()
        }
        defer { deadline.cancel() }
        do {
            // Waiting for the task's value waits until the reading has stopped.
            return try await withTaskCancellationHandler { try await reading.value } onCancel: { reading.cancel() }
        } catch where passed.load(ordering: .relaxed) {
            throw TimeoutError(duration: due.limit)
        }
    }

    /// `work`'s result, or `DeadlinePassed` when `limit` comes first. The work runs in a task of its own, so
    /// the caller gets its answer at the deadline even when the work does not notice its cancellation.
    static func first<T: Sendable>(by due: Deadline.Due, _ work: @escaping @Sendable () async throws -> T) async throws -> T {
        let race = Race<T>()
        let task = Task {
            do { race.finish(.success(try await work())) } catch { race.finish(.failure(error)) }
        }
        let deadline = Deadline(due) {
            if race.finish(.failure(DeadlinePassed())) { task.cancel() }
        }
        defer { deadline.cancel() }
        return try await withTaskCancellationHandler {
            try await race.result()
        } onCancel: {
            task.cancel()
        }
    }
}

struct DeadlinePassed: Error {}

/// A request's deadline: `fire` runs once `limit` has passed, unless cancelled first. Deadlines wait in one
/// queue per limit, served by one task: every request of a server has the same limit, so they fall due in the
/// order they were set, and setting or cancelling one is a lock and an append or a flag, no timer, no task, no
/// thread woken (measured: an event-loop timer per request cost the no-route path a quarter of its rate,
/// mostly in waking the loop's thread to schedule and cancel it).
struct Deadline {
    /// When it falls due, and the server's limit it comes from (which names its queue: every deadline of a
    /// queue is its request's start plus the same limit, so they fall due in the order they are set).
    struct Due {
        var instant: ContinuousClock.Instant
        var limit: Duration

        init(_ instant: ContinuousClock.Instant, limit: Duration) {
            self.instant = instant
            self.limit = limit
        }
    }

    private let entry: DeadlineQueue.Entry

    init(_ due: Due, _ fire: @escaping @Sendable () -> Void) {
        entry = DeadlineQueue.for(due.limit).add(due: due.instant, fire)
    }

    /// A deadline `limit` from now.
    init(in limit: Duration, _ fire: @escaping @Sendable () -> Void) {
        self.init(Due(.now + limit, limit: limit), fire)
    }

    func cancel() { entry.cancel() }
}

/// The deadlines of one limit, in the order they fall due, and the task that fires them.
final class DeadlineQueue: Sendable {
    final class Entry: Sendable {
        let due: ContinuousClock.Instant
        let fire: @Sendable () -> Void
        private let cancelled = Atomic<Bool>(false)

        init(due: ContinuousClock.Instant, fire: @escaping @Sendable () -> Void) {
            self.due = due
            self.fire = fire
        }

        func cancel() { cancelled.store(true, ordering: .relaxed) }
        var isCancelled: Bool { cancelled.load(ordering: .relaxed) }
    }

    private struct State {
        var entries: [Entry] = []
        var head = 0
        /// Past this many entries, the cancelled ones are dropped (then it doubles what is left), so the queue
        /// holds about as many entries as there are requests in flight.
        var compactAt = 4096
        /// The serving task, waiting for the queue to have an entry.
        var idle: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())
    private static let queues = Mutex<[Duration: DeadlineQueue]>([:])

    /// The queue for `limit`, started on first use; it lives as long as the process.
    static func `for`(_ limit: Duration) -> DeadlineQueue {
        queues.withLock { queues in
            if let queue = queues[limit] { return queue }
            let queue = DeadlineQueue()
            queues[limit] = queue
            Task.detached { await queue.serve() }
            return queue
        }
    }

    private init() {}

    /// Entries not yet fired or dropped (cancelled ones included).
    var pending: Int { state.withLock { $0.entries.count - $0.head } }

    func add(due: ContinuousClock.Instant, _ fire: @escaping @Sendable () -> Void) -> Entry {
        let entry = Entry(due: due, fire: fire)
        let waiting = state.withLock { state -> CheckedContinuation<Void, Never>? in
            // Requests mostly finish in the order they came: their entries leave from the front.
            while state.head < state.entries.count, state.entries[state.head].isCancelled { state.head += 1 }
            if state.entries.count - state.head >= state.compactAt || state.head >= state.compactAt {
                state.entries = state.entries[state.head...].filter { !$0.isCancelled }
                state.head = 0
                state.compactAt = max(4096, 2 * state.entries.count)
            }
            state.entries.append(entry)
            defer { state.idle = nil }
            return state.idle
        }
        waiting?.resume()
        return entry
    }

    /// Fires what falls due, forever: sleeps until the oldest entry's time, or until there is one.
    private func serve() async {
        while true {
            let next: Entry? = state.withLock { state in
                while state.head < state.entries.count, state.entries[state.head].isCancelled { state.head += 1 }
                return state.head < state.entries.count ? state.entries[state.head] : nil
            }
            guard let next else {
                await withCheckedContinuation { continuation in
                    let ready = state.withLock { state -> Bool in
                        if state.head < state.entries.count { return true }
                        state.idle = continuation
                        return false
                    }
                    if ready { continuation.resume() }
                }
                continue
            }
            if next.due > .now { try? await Task.sleep(until: next.due, clock: .continuous) }
            let due: [Entry] = state.withLock { state in
                var due: [Entry] = []
                let now = ContinuousClock.now
                while state.head < state.entries.count, state.entries[state.head].due <= now {
                    due.append(state.entries[state.head])
                    state.head += 1
                }
                return due
            }
            for entry in due where !entry.isCancelled { entry.fire() }
        }
    }
}
/// The first of several results, handed to one waiter.
final class Race<T: Sendable>: Sendable {
    private struct State {
        var outcome: Result<T, any Error>?
        var waiter: CheckedContinuation<T, any Error>?
    }
    private let state = Mutex(State())

    /// Records `result` unless another came first; true when it was first.
    @discardableResult
    func finish(_ result: Result<T, any Error>) -> Bool {
        let (first, waiter): (Bool, CheckedContinuation<T, any Error>?) = state.withLock { state in
            guard state.outcome == nil else { return (false, nil) }
            state.outcome = result
            defer { state.waiter = nil }
            return (true, state.waiter)
        }
        waiter?.resume(with: result)
        return first
    }

    func result() async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let ready: Result<T, any Error>? = state.withLock { state in
                if let outcome = state.outcome { return outcome }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }
}
