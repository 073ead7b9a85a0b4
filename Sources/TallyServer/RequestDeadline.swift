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
/// The deadlines are timers on `TimerWheel`, not sleeping tasks nor event-loop timers: a request that answers
/// in time costs a timer set and cancelled (a lock and a dictionary insert and remove each), and the one task
/// that lets the answer go out at the deadline while work that ignores its cancellation goes on.
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
            body = try await Self.collect(request, within: limit)
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
        let remaining = limit - (ContinuousClock.now - started)
        do {
            return try await Self.first(within: remaining) { [inner, request] in try await inner.respond(to: request, context: context) }
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
    static func collect(_ request: Request, within limit: Duration) async throws -> ByteBuffer {
        guard request.headers[.contentLength] != nil || request.headers[.transferEncoding] != nil else { return ByteBuffer() }
        let body = request.body
        let reading = Task { try await body.collect(upTo: Request.maximumBody) }
        let passed = Atomic<Bool>(false)
        let deadline = TimerWheel.shared.schedule(in: limit) {
            passed.store(true, ordering: .relaxed)
            reading.cancel()
        }
        defer { TimerWheel.shared.cancel(deadline) }
        do {
            // Waiting for the task's value waits until the reading has stopped.
            return try await withTaskCancellationHandler { try await reading.value } onCancel: { reading.cancel() }
        } catch where passed.load(ordering: .relaxed) {
            throw TimeoutError(duration: limit)
        }
    }

    /// `work`'s result, or `DeadlinePassed` when `limit` comes first. The work runs in a task of its own, so
    /// the caller gets its answer at the deadline even when the work does not notice its cancellation.
    static func first<T: Sendable>(within limit: Duration, _ work: @escaping @Sendable () async throws -> T) async throws -> T {
        let race = Race<T>()
        let task = Task {
            do { race.finish(.success(try await work())) } catch { race.finish(.failure(error)) }
        }
        let deadline = TimerWheel.shared.schedule(in: limit) {
            if race.finish(.failure(DeadlinePassed())) { task.cancel() }
        }
        defer { TimerWheel.shared.cancel(deadline) }
        return try await withTaskCancellationHandler {
            try await race.result()
        } onCancel: {
            task.cancel()
        }
    }
}

struct DeadlinePassed: Error {}

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
