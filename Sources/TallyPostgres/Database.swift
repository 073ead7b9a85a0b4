import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// How long work waits for a database connection before it gives up with `databaseUnavailable`, so a
/// request answers promptly while the database is away instead of hanging. The server sets it per request
/// (`--database-wait`); everything else waits the default.
public enum DatabaseWait {
    public static let standard: Duration = .seconds(3)
    @TaskLocal public static var limit: Duration = standard
}

/// Where Tally's credits code gets its database connections: a postgres-nio pool, with every wait for a
/// connection bounded (`DatabaseWait`) and, when it runs as a service, a pool that comes back at once after an
/// outage.
///
/// postgres-nio's pool retries a server it cannot reach with a growing backoff (100 ms × 1.25ⁿ, one connection
/// at a time): after a 45-second outage its next attempt can be ten seconds away, so requests would keep
/// failing long after PostgreSQL is back. While requests are failing for want of the database, `run()` tries
/// a connection of its own every 100 ms; once that succeeds and the pool still lends nothing, it
/// starts a fresh pool, which connects at once, and retires the old one after its work is done.
public final class Database: Service, Sendable {
    let state: Mutex<State>
    /// Set when this database owns its pool (and can make a fresh one).
    private let settings: ConnectionSettings?
    /// The database's own logger (the pool's, and work no request asked for).
    public let logger: Logger
    /// Whether hot statements are prepared on its connections (`ConnectionSettings.preparedStatements`).
    public let prepared: PreparedStatements
    /// Gives a connection back to its pool when it closes mid-lease (`Database+Lease`).
    let closeWatch = CloseWatch()

    struct State {
        var pool: PostgresClient
        /// Since when requests have failed for want of the database (nil: all is well).
        var troubleSince: ContinuousClock.Instant?
        /// Leases waiting on the current pool, to be pointed at its replacement.
        var waiting: [UUID: CheckedContinuation<PostgresClient?, Never>] = [:]
    }

    /// A database over `client`, which the caller runs; no pool replacement.
    public init(_ client: PostgresClient, preparedStatements: Bool = true) {
        self.state = Mutex(State(pool: client))
        self.settings = nil
        self.logger = Logger(label: "tally")
        self.prepared = PreparedStatements(enabled: preparedStatements)
    }

    /// A database that owns its pool: `run()` runs it and replaces it after an outage.
    public init(settings: ConnectionSettings, logger: Logger) {
        self.state = Mutex(State(pool: PostgresClient(configuration: settings.clientConfiguration(), backgroundLogger: logger)))
        self.settings = settings
        self.logger = logger
        self.prepared = PreparedStatements(enabled: settings.preparedStatements)
    }

    /// The pool in use now.
    public var pool: PostgresClient { state.withLock { $0.pool } }

    /// Requests are failing for want of the database: `run()` starts watching for its return.
    func noteTrouble() {
        state.withLock { if $0.troubleSince == nil { $0.troubleSince = .now } }
    }

    /// A lease ran its work to the end: the pool in use lends again, so there is nothing to watch for.
    func noteWellAgain() {
        state.withLock { $0.troubleSince = nil }
    }

    /// Runs the pool (and its replacements) until cancelled or the service group shuts down.
    public func run() async {
        guard let settings else {
            await pool.run()
            return
        }
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                var retire = Self.start(self.pool, in: &group)
                while !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(100))
                    guard !Task.isCancelled, self.state.withLock({ $0.troubleSince != nil }) else { continue }
                    guard (try? await checkReachable(settings, timeout: .seconds(1))) != nil else { continue }
                    // A lease that completes clears the trouble itself (`noteWellAgain`).
                    if await self.poolLends(within: .milliseconds(100)) {
                        continue
                    }
                    let fresh = PostgresClient(configuration: settings.clientConfiguration(), backgroundLogger: self.logger)
                    let retireFresh = Self.start(fresh, in: &group)
                    let (down, waiting) = self.state.withLock { state -> (Duration, [CheckedContinuation<PostgresClient?, Never>]) in
                        defer {
                            state.pool = fresh
                            state.troubleSince = nil
                            state.waiting = [:]
                        }
                        return (state.troubleSince.map { .now - $0 } ?? .zero, Array(state.waiting.values))
                    }
                    // Requests already waiting for a connection get one from the fresh pool.
                    for waiter in waiting { waiter.resume(returning: fresh) }
                    self.logger.notice("the database is back: a fresh connection pool replaces the one still backing off", metadata: [
                        "trouble_for": "\(down)",
                    ])
                    // Work still running on the old pool finishes there; then it closes.
                    let old = retire
                    retire = retireFresh
                    group.addTask {
                        try? await Task.sleep(for: .seconds(30))
                        old.finish()
                    }
                }
                retire.finish()
            }
        }
    }

    /// Runs `pool` in `group` until the returned continuation finishes (or the group is cancelled).
    private static func start(_ pool: PostgresClient, in group: inout DiscardingTaskGroup) -> AsyncStream<Void>.Continuation {
        let (retired, retire) = AsyncStream<Void>.makeStream()
        group.addTask {
            await withTaskGroup(of: Void.self) { running in
                running.addTask { await pool.run() }
                running.addTask { for await _ in retired {} }
                await running.next()
                running.cancelAll()
            }
        }
        return retire
    }

    private func poolLends(within limit: Duration) async -> Bool {
        do {
            try await DatabaseWait.$limit.withValue(limit) { try await leased(logger: logger) { _ in } }
            return true
        } catch {
            return false
        }
    }

    /// A transaction, rethrowing the closure's own error (postgres-nio would wrap it in
    /// `PostgresTransactionError`, hiding the caller's own error from the HTTP layer). Inside the context's request
    /// transaction it runs in a savepoint of that transaction instead, so a failure undoes only its own writes.
    public func transaction<T: Sendable>(_ context: QueryContext, _ body: (DatabaseConnection) async throws -> T) async throws -> T {
        if let transaction = context.transaction {
            return try await Self.inSavepoint(transaction, logger: context.logger, body)
        }
        func attempt() async throws -> T {
            try await leased(logger: context.logger) { connection in try await connection.transaction { try await body($0) } }
        }
        do {
            return try await attempt()
        } catch is PreparedStatementLost {
            // A pooler lost a prepared statement: the transaction did nothing, and statements are no longer
            // prepared, so it runs again at once.
            return try await attempt()
        }
    }

    /// The server's version (`server_version`), as a health check asks it.
    public func serverVersion(_ context: QueryContext) async throws -> String {
        try await connection(context) { connection in
            for try await version in try await connection.query("SELECT current_setting('server_version')").decode(String.self) { return version }
            return "unknown"
        }
    }

    /// A pooled connection, or the context's request transaction (in a savepoint, so a failed statement does
    /// not abort the request's transaction).
    public func connection<T: Sendable>(_ context: QueryContext, _ body: (DatabaseConnection) async throws -> T) async throws -> T {
        if let transaction = context.transaction {
            return try await Self.inSavepoint(transaction, logger: context.logger, body)
        }
        return try await leased(logger: context.logger) { connection in try await body(connection) }
    }

    private static func inSavepoint<T: Sendable>(
        _ transaction: RequestTransaction, logger: Logger, _ body: (DatabaseConnection) async throws -> T
    ) async throws -> T {
        let connection = DatabaseConnection(transaction.connection, logger: logger, prepared: transaction.prepared, inTransaction: true)
        let savepoint = transaction.nextSavepoint()
        try await connection.execute("SAVEPOINT \(unescaped: savepoint)")
        do {
            let result = try await body(connection)
            try await connection.execute("RELEASE SAVEPOINT \(unescaped: savepoint)")
            return result
        } catch {
            await connection.rollBack(after: error, toSavepoint: savepoint)
            throw error
        }
    }
}
