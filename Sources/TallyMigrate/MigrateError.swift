import TallyPostgres

/// Everything that can go wrong in `TallyMigrate`: each case says what happened and what to do next.
public struct MigrateError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable, Codable {
        case invalidFolder = "invalid_migration_folder"
        case unknownMigration = "unknown_migration"
        case migrationFailed = "migration_failed"
        case lockTimeout = "lock_timeout"
        case historyProblem = "history_problem"
        case baselineRefused = "baseline_refused"
        case noDownFile = "no_down_file"
        case invalidHistoryTable = "invalid_history_table"
        case confirmationRequired = "confirmation_required"
        /// An app's declaration (a Drizzle snapshot, SQLAlchemy metadata) could not be read or created.
        case invalidDeclaration = "invalid_declaration"
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
