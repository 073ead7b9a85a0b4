import ArgumentParser
import Foundation
import Logging
import Synchronization
import TallyPostgres

/// Options every command that touches a database shares.
struct DatabaseOptions: ParsableArguments {
    @Option(
        name: .customLong("database-url"),
        help: ArgumentHelp(
            "PostgreSQL URL to use instead of the embedded cluster (default: $DATABASE_URL).",
            valueName: "url"))
    var databaseURL: String?

    @Option(
        name: .customLong("data-dir"),
        help: ArgumentHelp(
            "Folder of the embedded PostgreSQL cluster (default: the nearest .tally/postgres here or above, else ./.tally/postgres).",
            valueName: "path"))
    var dataDirectory: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical (default: warning; info for serve). Logs go to stderr.")
    var logLevel: Logger.Level?

    /// An empty `--database-url` is a mistake (an unset variable in a script), not a request for the
    /// embedded cluster: only an absent flag means that.
    func validate() throws {
        if let databaseURL, databaseURL.trimmingCharacters(in: .whitespaces).isEmpty {
            throw ValidationError("--database-url is empty (an unset variable?); give a postgres:// URL, or leave the option out to use the embedded cluster")
        }
    }

    /// The URL from the flag, else from the environment; nil means the embedded cluster. An empty
    /// DATABASE_URL counts as unset.
    var externalURL: String? {
        if let databaseURL, !databaseURL.isEmpty { return databaseURL }
        if let env = ProcessInfo.processInfo.environment["DATABASE_URL"], !env.isEmpty { return env }
        return nil
    }

    /// Where backups go by default: `backups/` beside the cluster folder (`.tally/backups`).
    var backupDirectory: String {
        ((cluster.dataDirectory as NSString).deletingLastPathComponent as NSString).appendingPathComponent("backups")
    }

    var cluster: LocalCluster { LocalCluster(dataDirectory: dataDirectory ?? LocalCluster.defaultDataDirectory()) }

    /// Settings for the database to work on: the external URL, or the embedded cluster (started when needed).
    /// Logging starts here (once per process, at `--log-level`), before anything touches a database.
    func resolve(quiet: Bool = false) async throws -> ConnectionSettings {
        startLogging(level: logLevel ?? .warning)
        if let url = externalURL { return try ConnectionSettings(url: url) }
        return try await cluster.start { line in
            if !quiet { printErr(line) }
        }
    }
}

/// Starts the logging system at `level`, once per process (later calls change nothing). Logs go to stderr so
/// `--json` output on stdout stays clean.
func startLogging(level: Logger.Level) {
    loggingStarted.withLock { started in
        guard !started else { return }
        started = true
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

private let loggingStarted = Mutex(false)

extension Logger.Level: @retroactive ExpressibleByArgument {}
