import Foundation
import Synchronization
import Logging
import PostgresNIO

/// Lending connections: every wait bounded by `DatabaseWait.limit`, and moved to a replacement pool when
/// `run()` swaps one in while the wait goes on.
extension Database {
    /// A connection from the pool, waiting at most `DatabaseWait.limit` for it; past it, `databaseUnavailable`
    /// (nothing was run). Once leased, `body` runs to its end: only the wait is bounded.
    /// A child task holds the lease and hands the connection over, so `body` runs in the caller's task; the
    /// wait's bound is a `TimerWheel` timer (a sleeping task per query cost a second task and a dispatch timer).
    public func leased<T>(logger: Logger, _ body: (DatabaseConnection) async throws -> T) async throws -> T {
        let limit = DatabaseWait.limit
        let pool = self.pool
        let lease = Lease(unavailable: TallyPostgresError(
            .databaseUnavailable,
            "the database gave no connection within \(limit) (it may be restarting); nothing was done, so retry in a moment"))
        let timer = TimerWheel.shared.schedule(in: limit) { lease.expire() }
        defer { TimerWheel.shared.cancel(timer) }
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                // From the pool in use, or from the one that replaces it while this waits.
                var pool: PostgresClient? = pool
                while let current = pool { pool = await self.lend(from: current, to: lease) }
            }
            defer { group.cancelAll() }
            let connection: PostgresConnection
            do {
                connection = try await lease.connection()
                TimerWheel.shared.cancel(timer)
            } catch {
                noteTrouble()
                throw error
            }
            guard !connection.isClosed else {
                lease.giveBack()
                noteTrouble()
                throw TallyPostgresError(.databaseUnavailable, "the database closed the connection before anything was sent (it may be restarting); nothing was done, so retry in a moment")
            }
            do {
                let result = try await body(DatabaseConnection(connection, logger: logger, prepared: prepared))
                lease.giveBack()
                noteWellAgain()
                return result
            } catch {
                lease.giveBack()
                if DatabaseFailure.isConnectionLoss(error) { noteTrouble() }
                throw error
            }
        }
    }

    /// Lends a connection of `pool` to `lease` and holds it until it is given back; or, when `pool` is
    /// replaced while the lease still waits, stops waiting and returns the replacement. Only while trouble is
    /// noted can a replacement come, so only then does the lease watch for one: when all is well a lease costs
    /// no task of its own. (A lease that began before the trouble and still waits runs out at its deadline, as
    /// it would have without a replacement; every lease after the first failure watches.)
    private func lend(from pool: PostgresClient, to lease: Lease) async -> PostgresClient? {
        guard state.withLock({ $0.troubleSince != nil }) else {
            await hold(pool, for: lease)
            return nil
        }
        return await withTaskGroup(of: PostgresClient?.self) { lenders in
            lenders.addTask {
                await self.hold(pool, for: lease)
                return nil
            }
            lenders.addTask { await self.replacement(of: pool) }
            let first = await lenders.next() ?? nil
            if let fresh = first, lease.isWaiting {
                lenders.cancelAll()
                return fresh
            }
            if first == nil { lenders.cancelAll() }
            // Replaced after the connection was lent: the lender holds it until it is given back.
            for await _ in lenders {}
            return nil
        }
    }

    /// Takes a connection of `pool` for `lease` and holds it until it is given back.
    private func hold(_ pool: PostgresClient, for lease: Lease) async {
        do {
            try await pool.withConnection { connection in
                guard lease.take(connection) else { return }
                // A connection that closes goes back to the pool at once, even if `body` never hears of
                // it: postgres-nio (1.33) never answers a statement written just as the connection
                // closed, and the pool must not lose the connection to that wait.
                closeWatch.lend(connection, to: lease)
                await lease.untilReturned()
                closeWatch.lend(connection, to: nil)
            }
        } catch where !Task.isCancelled {
            // The pool gave up (its circuit breaker trips after a minute of failed connection attempts,
            // then it refuses at once): nothing was sent, so this is the same answer as a wait that ran out.
            lease.fail(TallyPostgresError(
                .databaseUnavailable,
                "the database cannot be reached (\(describe(error))); nothing was done, so retry in a moment", underlying: error))
        } catch {}
    }

    /// The pool that replaces `pool`, once it does; nil when cancelled first.
    private func replacement(of pool: PostgresClient) async -> PostgresClient? {
        let id = UUID()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<PostgresClient?, Never>) in
                let now: PostgresClient?? = state.withLock { state in
                    if state.pool !== pool { return .some(state.pool) }
                    if Task.isCancelled { return .some(nil) }
                    state.waiting[id] = continuation
                    return .none
                }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            state.withLock { $0.waiting.removeValue(forKey: id) }?.resume(returning: nil)
        }
    }
}

/// Gives a connection's lease back when the connection closes, with one callback on its `closeFuture` for
/// the connection's whole life: a callback per lease would pile up there until the connection closed.
final class CloseWatch: Sendable {
    /// Each watched connection and the lease that holds it now (nil: in the pool).
    private let holders = Mutex<[ObjectIdentifier: Lease?]>([:])

    /// `connection` is lent to `lease` (nil: it went back to the pool).
    func lend(_ connection: PostgresConnection, to lease: Lease?) {
        let id = ObjectIdentifier(connection)
        let first = holders.withLock { holders in
            defer { holders[id] = .some(lease) }
            return holders[id] == nil
        }
        guard first else { return }
        connection.closeFuture.whenComplete { [self] _ in
            let holder = holders.withLock { $0.removeValue(forKey: id) ?? nil }
            holder?.giveBack()
        }
    }

    /// How many connections are watched (for tests).
    var count: Int { holders.withLock { $0.count } }
}

/// One connection lease raced against a deadline: the connection arrives (`take`), the wait runs out
/// (`expire`) or the pool fails (`fail`), whichever is first; the caller waits in `connection()` and hands
/// the connection back with `giveBack()`.
final class Lease: Sendable {
    private enum Stage {
        case waiting(CheckedContinuation<PostgresConnection, any Error>?)
        case taken(PostgresConnection)
        case over
    }

    private struct State {
        var stage = Stage.waiting(nil)
        var returned = false
        var returnWaiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())
    let unavailable: TallyPostgresError

    init(unavailable: TallyPostgresError) {
        self.unavailable = unavailable
    }

    /// The leased connection, or `unavailable` when the wait ran out first.
    func connection() async throws -> PostgresConnection {
        try await withCheckedThrowingContinuation { continuation in
            let ready: Result<PostgresConnection, any Error>? = state.withLock { state in
                switch state.stage {
                case .waiting:
                    state.stage = .waiting(continuation)
                    return nil
                case .taken(let connection): return .success(connection)
                case .over: return .failure(unavailable)
                }
            }
            if let ready { continuation.resume(with: ready) }
        }
    }

    /// Whether the caller still waits for a connection.
    var isWaiting: Bool {
        state.withLock {
            if case .waiting = $0.stage { return true }
            return false
        }
    }

    /// The pool gave `connection`: true when it came in time (the caller gets it).
    func take(_ connection: PostgresConnection) -> Bool {
        let waiter: CheckedContinuation<PostgresConnection, any Error>?? = state.withLock { state in
            guard case .waiting(let waiter) = state.stage else { return .none }
            state.stage = .taken(connection)
            return .some(waiter)
        }
        guard let waiter else { return false }
        waiter?.resume(returning: connection)
        return true
    }

    /// The wait ran out: the caller gets `unavailable` unless the connection already came.
    func expire() { finish(with: unavailable) }

    /// The pool failed before giving a connection.
    func fail(_ error: any Error) { finish(with: error) }

    private func finish(with error: any Error) {
        let waiter: CheckedContinuation<PostgresConnection, any Error>?? = state.withLock { state in
            guard case .waiting(let waiter) = state.stage else { return .none }
            state.stage = .over
            return .some(waiter)
        }
        if let waiter { waiter?.resume(throwing: error) }
    }

    /// Held by the task that leased the connection, until the caller is done with it.
    func untilReturned() async {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state in
                if state.returned { return true }
                state.returnWaiter = continuation
                return false
            }
            if done { continuation.resume() }
        }
    }

    func giveBack() {
        let waiter = state.withLock { state in
            state.returned = true
            defer { state.returnWaiter = nil }
            return state.returnWaiter
        }
        waiter?.resume()
    }
}
