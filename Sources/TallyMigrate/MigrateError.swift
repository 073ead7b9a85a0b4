import TallyPostgres

/// Everything that can go wrong in `TallyMigrate`: each case says what happened and what to do next.
public struct MigrateError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable, Codable {
        case invalidFolder = "invalid-migration-folder"
        case unknownMigration = "unknown-migration"
        case migrationFailed = "migration-failed"
        case lockTimeout = "lock-timeout"
        case historyProblem = "history-problem"
        case baselineRefused = "baseline-refused"
        case noDownFile = "no-down-file"
        case invalidHistoryTable = "invalid-history-table"
        case confirmationRequired = "confirmation-required"
        /// An app's declaration (a Drizzle snapshot, SQLAlchemy metadata) could not be read or created.
        case invalidDeclaration = "invalid-declaration"
    }

    public var code: Code
    public var message: String

    /// The error this one was made from (a PostgreSQL error, a parser's), kept for logs and callers; `message`
    /// says what it means.
    public var underlying: (any Error & Sendable)?

    public init(_ code: Code, _ message: String, underlying: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public var description: String { message }
}
