/// Everything that can go wrong in `TallyPostgres`: each case says what happened and what to do next.
///
/// Messages never contain a password; URL errors name the part of the URL that is wrong, not its value.
public struct TallyPostgresError: Error, CustomStringConvertible, Sendable, Equatable {
    /// A stable code, for scripts and tests.
    public enum Code: String, Sendable {
        case invalidURL = "invalid_url"
        case binariesNotFound = "postgres_binaries_not_found"
        case noServiceUser = "no_service_user"
        case clusterInit = "cluster_init_failed"
        case clusterStart = "cluster_start_failed"
        case clusterStop = "cluster_stop_failed"
        case clusterNotInitialized = "cluster_not_initialized"
        case clusterUnreadable = "cluster_unreadable"
        case commandFailed = "command_failed"
        case databaseUnreachable = "database_unreachable"
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    static func invalidURL(_ message: String) -> Self {
        Self(.invalidURL, "DATABASE_URL is not valid: \(message)")
    }
}
