import Foundation
import PostgresNIO
import TallyPostgres

/// How long work waits for a database connection before it gives up with `databaseUnavailable`, so a
/// request answers promptly while the database is away instead of hanging. The server sets it per request.
public enum DatabaseWait {
    @TaskLocal public static var limit: Duration = .seconds(5)
}

/// The database transaction a request's work joins, when the request runs inside one (an `Idempotency-Key`
/// request: its effects and its stored answer commit together, or not at all).
public enum RequestTransaction {
    @TaskLocal public static var connection: PostgresConnection?
}

extension PostgresClient {
    /// `withTransaction`, rethrowing the closure's own error: postgres-nio wraps it in
    /// `PostgresTransactionError`, which would hide a `CreditsError` from the HTTP layer.
    /// Inside a `RequestTransaction` it runs in a savepoint of that transaction instead, so a failure undoes
    /// only its own writes.
    func transaction<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        if let connection = RequestTransaction.connection {
            return try await Self.inSavepoint(connection, body)
        }
        return try await leased { connection in try await connection.transaction { try await body(connection) } }
    }

    /// A pooled connection, or the request transaction's (in a savepoint, so a failed statement does not
    /// abort the request's transaction).
    func connection<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        if let connection = RequestTransaction.connection {
            return try await Self.inSavepoint(connection, body)
        }
        return try await leased { connection in try await body(connection) }
    }

    /// `withConnection`, waiting at most `DatabaseWait.limit` for the pool to hand out a connection; past it,
    /// `databaseUnavailable` (nothing was run). Once leased, `body` runs to its end: only the wait is bounded.
    /// A child task holds the lease and hands the connection over, so `body` runs in the caller's task.
    public func leased<T>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        let limit = DatabaseWait.limit
        let lease = Lease(unavailable: CreditsError(
            .databaseUnavailable,
            "the database gave no connection within \(limit) (it may be restarting); nothing was done, so retry in a moment"))
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    try await self.withConnection { connection in
                        guard lease.take(connection) else { return }
                        await lease.untilReturned()
                    }
                } catch {
                    lease.fail(error)
                }
            }
            group.addTask {
                try? await Task.sleep(for: limit)
                lease.expire()
            }
            defer { group.cancelAll() }
            let connection = try await lease.connection()
            do {
                let result = try await body(connection)
                lease.giveBack()
                return result
            } catch {
                lease.giveBack()
                throw error
            }
        }
    }

    fileprivate static func inSavepoint<T: Sendable>(_ connection: PostgresConnection, _ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await connection.execute("SAVEPOINT tally_step")
        do {
            let result = try await body(connection)
            try await connection.execute("RELEASE SAVEPOINT tally_step")
            return result
        } catch {
            try? await connection.execute("ROLLBACK TO SAVEPOINT tally_step")
            throw error
        }
    }
}

/// One connection lease raced against a deadline: the connection arrives (`take`), the wait runs out
/// (`expire`) or the pool fails (`fail`), whichever is first; the caller waits in `connection()` and hands
/// the connection back with `giveBack()`.
final class Lease: @unchecked Sendable {
    private enum State {
        case waiting(CheckedContinuation<PostgresConnection, any Error>?)
        case taken(PostgresConnection)
        case over
    }

    private let lock = NSLock()
    private var state = State.waiting(nil)
    private var returned = false
    private var returnWaiter: CheckedContinuation<Void, Never>?
    let unavailable: CreditsError

    init(unavailable: CreditsError) {
        self.unavailable = unavailable
    }

    /// The leased connection, or `unavailable` when the wait ran out first.
    func connection() async throws -> PostgresConnection {
        try await withCheckedThrowingContinuation { continuation in
            let ready: Result<PostgresConnection, any Error>? = lock.withLock {
                switch state {
                case .waiting:
                    state = .waiting(continuation)
                    return nil
                case .taken(let connection): return .success(connection)
                case .over: return .failure(unavailable)
                }
            }
            if let ready { continuation.resume(with: ready) }
        }
    }

    /// The pool gave `connection`: true when it came in time (the caller gets it).
    func take(_ connection: PostgresConnection) -> Bool {
        let waiter: CheckedContinuation<PostgresConnection, any Error>?? = lock.withLock {
            guard case .waiting(let waiter) = state else { return .none }
            state = .taken(connection)
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
        let waiter: CheckedContinuation<PostgresConnection, any Error>?? = lock.withLock {
            guard case .waiting(let waiter) = state else { return .none }
            state = .over
            return .some(waiter)
        }
        if let waiter { waiter?.resume(throwing: error) }
    }

    /// Held by the task that leased the connection, until the caller is done with it.
    func untilReturned() async {
        await withCheckedContinuation { continuation in
            let done = lock.withLock {
                if returned { return true }
                returnWaiter = continuation
                return false
            }
            if done { continuation.resume() }
        }
    }

    func giveBack() {
        let waiter = lock.withLock {
            returned = true
            defer { returnWaiter = nil }
            return returnWaiter
        }
        waiter?.resume()
    }
}
