import Logging
import PostgresNIO

/// Runs `body` with a `PostgresClient` for `settings`, running the client for exactly that long.
/// For one-shot commands; the server adds its client to its ServiceGroup instead.
public func withPostgresClient<T: Sendable>(
    _ settings: ConnectionSettings,
    maximumConnections: Int = 4,
    logger: Logger = Logger(label: "tally.postgres"),
    _ body: (PostgresClient) async throws -> T
) async throws -> T {
    var configuration = settings.clientConfiguration()
    configuration.options.maximumConnections = maximumConnections
    let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
    return try await withThrowingTaskGroup(of: Void.self, returning: T.self) { group in
        group.addTask { await client.run() }
        defer { group.cancelAll() }
        try await checkReachable(settings)
        return try await body(client)
    }
}

/// One connection for `body`: admin statements (CREATE DATABASE) and session-level work (advisory locks).
/// Its statements log to `logger` (by default the logging system's, labelled `tally.postgres`).
/// One direct connection, no pool: a refused connection, a failed login or no answer within 5 s is one
/// clear error, as `checkReachable` gives, at the cost of one login instead of two.
public func withSingleConnection<T: Sendable>(
    _ settings: ConnectionSettings,
    logger: Logger = Logger(label: "tally.postgres"),
    _ body: (DatabaseConnection) async throws -> T
) async throws -> T {
    let connection = try await connect(settings, logger: logger)
    do {
        let result = try await body(DatabaseConnection(connection, logger: logger))
        try? await connection.close()
        return result
    } catch {
        try? await connection.close()
        throw error
    }
}

/// A direct connection to `settings`, or `TallyPostgresError.unreachable` when it is not ready (connected,
/// logged in) within `timeout`. The connection's own events (its start-up, its messages) log to `logger`.
///
/// The limit is postgres-nio's own connect deadline, not a race against a timer: a caller cancelled while the
/// login completes gets the connection (and closes it) instead of leaving it to be dropped unclosed.
private func connect(
    _ settings: ConnectionSettings, timeout: Duration? = nil, logger: Logger = LocalCluster.quietLogger
) async throws -> PostgresConnection {
    do {
        var configuration = try settings.connectionConfiguration()
        if let timeout { configuration.options.connectTimeout = TimeAmount(timeout) }
        return try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
    } catch {
        throw TallyPostgresError.unreachable(settings, error)
    }
}

/// postgres-nio's pool keeps retrying a server it cannot reach, so a command would wait instead of
/// failing. One direct connection first turns a refused connection, a failed login or no answer
/// within `timeout` (by default the settings' connect timeout, 5 s) into one clear error at once.
public func checkReachable(_ settings: ConnectionSettings, timeout: Duration? = nil) async throws {
    let connection = try await connect(settings, timeout: timeout)
    try? await connection.close()
}

extension TallyPostgresError {
    static func unreachable(_ settings: ConnectionSettings, _ error: any Error) -> TallyPostgresError {
        let cause = describe(error)
        if settings.sslMode == .verifyFull || settings.sslMode == .verifyCA, cause.localizedCaseInsensitiveContains("certificate") || cause.contains("handshake") {
            return TallyPostgresError(
                .databaseUnreachable,
                "could not connect to \(settings): the server's TLS certificate was not trusted (\(cause)). sslmode=\(settings.sslMode.rawValue) checks it against \(settings.sslRootCert.map { "the CAs in \($0)" } ?? "the system's certificate authorities")\(settings.sslMode == .verifyFull ? " and the host name" : ""); name your CA's PEM file with ?sslrootcert=/path/ca.pem, or (trusting the network) encrypt without checking with sslmode=require."
            )
        }
        return TallyPostgresError(
            .databaseUnreachable,
            "could not connect to \(settings) (\(cause)). Check that the server runs and the URL is right; without DATABASE_URL, `tally db start` starts the embedded cluster."
        )
    }
}

/// A short, password-free description of a postgres-nio error: PostgreSQL's own message when there is one.
public func describe(_ error: any Error) -> String {
    if let error = error as? PSQLError {
        if let info = error.serverInfo, let message = info[.message] {
            var text = message + (info[.sqlState].map { " (SQLSTATE \($0))" } ?? "")
            if let detail = info[.detail] { text += "; detail: " + detail }
            if let hint = info[.hint] { text += "; hint: " + hint }
            return text
        }
        if let underlying = error.underlying { return "\(error.code): \(underlying)" }
        return "\(error.code)"
    }
    if let error = error as? PostgresDecodingError {
        return "cannot read column \(error.columnName) (PostgreSQL type \(error.postgresType)) as \(error.targetType) (\(error.file):\(error.line))"
    }
    if let error = error as? TallyPostgresError { return error.message }
    return "\(error)"
}

/// An error as a log may hold it: for a server error its message, SQLSTATE, table and constraint, never the
/// `detail` (PostgreSQL puts row values there: "Key (email)=(…) already exists").
public func describeForLog(_ error: any Error) -> String {
    guard let error = error as? PSQLError, let info = error.serverInfo, let message = info[.message] else { return describe(error) }
    var text = message + (info[.sqlState].map { " (SQLSTATE \($0))" } ?? "")
    if let table = info[.tableName] { text += "; table \(table)" }
    if let constraint = info[.constraintName] { text += "; constraint \(constraint)" }
    return text
}

/// An error as a user should see it: postgres-nio's errors describe themselves with a placeholder
/// ("Generic description to prevent accidental leakage…"), so they become the server's own message.
public struct DatabaseFailure: Error, CustomStringConvertible {
    public var description: String

    /// The connection to the server broke or the server is shutting down or starting (SQLSTATE classes 08
    /// and 57P): not a refusal of the statement, so whatever was sent may or may not have committed.
    public static func isConnectionLoss(_ error: any Error) -> Bool {
        if error is ConnectionClosed { return true }
        guard let error = error as? PSQLError else { return false }
        if let state = error.serverInfo?[.sqlState] { return state.hasPrefix("08") || state.hasPrefix("57P") }
        return [.serverClosedConnection, .connectionError, .uncleanShutdown, .clientClosedConnection, .poolClosed].contains(error.code)
    }

    /// `error` itself, or a `DatabaseFailure` with its real cause when it comes from postgres-nio.
    public static func userFacing(_ error: any Error) -> any Error {
        if error is PSQLError || error is PostgresDecodingError { return DatabaseFailure(description: describe(error)) }
        return error
    }
}

/// The connection closed before the statement was sent: nothing of it ran.
public struct ConnectionClosed: Error, CustomStringConvertible {
    public init() {}
    public var description: String { "the connection to the database closed (the server may be restarting)" }
}

/// Runs `operation`, failing with `TimeoutError` when it takes longer than `duration`.
public func withTimeout<T: Sendable>(
    _ duration: Duration,
    _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: duration)
            throw TimeoutError(duration: duration)
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}

public struct TimeoutError: Error, CustomStringConvertible {
    public var duration: Duration

    public init(duration: Duration) {
        self.duration = duration
    }
    public var description: String { "no answer within \(duration)" }
}

/// `name` as a double-quoted SQL identifier: the one place identifiers are quoted.
public func quoteIdentifier(_ name: String) -> String {
    "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
}

extension PostgresConnection {
    /// Runs a statement and waits until PostgreSQL has finished it, reading any rows it returns.
    /// Nothing is sent on a connection that is already closed: postgres-nio (1.33) never answers a statement
    /// written to a closed channel, so the caller would wait forever; it gets `ConnectionClosed` instead.
    public func execute(_ query: PostgresQuery, logger: Logger) async throws {
        guard !isClosed else { throw ConnectionClosed() }
        for try await _ in try await self.query(query, logger: logger) {}
    }

    /// Undoes the open transaction (with `savepoint`, back to that savepoint) after `error`. When the
    /// connection is lost, nothing is sent: the server has already rolled the transaction back.
    public func rollBack(after error: any Error, toSavepoint savepoint: String? = nil, logger: Logger) async {
        guard !isClosed, !DatabaseFailure.isConnectionLoss(error) else { return }
        try? await execute(savepoint.map { "ROLLBACK TO SAVEPOINT \(unescaped: $0)" } ?? "ROLLBACK", logger: logger)
    }
}
