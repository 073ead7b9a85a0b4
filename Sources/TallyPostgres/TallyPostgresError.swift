/// Everything that can go wrong in `TallyPostgres`: each case says what happened and what to do next.
///
/// Messages never contain a password; URL errors name the part of the URL that is wrong, not its value.
public struct TallyPostgresError: Error, CustomStringConvertible, Sendable, Equatable {
    /// A stable code, for scripts and tests.
    public enum Code: String, Sendable {
        case invalidURL = "invalid-url"
        case binariesNotFound = "postgres-binaries-not-found"
        case noServiceUser = "no-service-user"
        case clusterInit = "cluster-init-failed"
        case clusterStart = "cluster-start-failed"
        case clusterStop = "cluster-stop-failed"
        case clusterNotInitialized = "cluster-not-initialized"
        case clusterUnreadable = "cluster-unreadable"
        case commandFailed = "command-failed"
        case databaseUnreachable = "database-unreachable"
        /// No connection came within the wait (`DatabaseWait`), or it closed before anything was sent: nothing
        /// was done, retry shortly.
        case databaseUnavailable = "database-unavailable"
    }

    public var code: Code
    public var message: String

    /// The error this one was made from, kept for logs and callers; `message` says what it means.
    public var underlying: (any Error & Sendable)?

    public init(_ code: Code, _ message: String, underlying: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    /// Equal when code and message are (the underlying error is not compared).
    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message
    }

    public var description: String { message }

    static func invalidURL(_ message: String) -> Self {
        Self(.invalidURL, "DATABASE_URL is not valid: \(message)")
    }
}
