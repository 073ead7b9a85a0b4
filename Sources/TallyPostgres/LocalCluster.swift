import Foundation
import Logging
import PostgresNIO

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The embedded PostgreSQL cluster Tally uses when no `DATABASE_URL` is given.
///
/// Created once under `.tally/postgres` (or another folder), it listens on 127.0.0.1 on a free port chosen
/// at creation and remembered, and on a Unix socket inside its own folder. Starting is idempotent and safe
/// when several tally processes start the same cluster at once: one starts it, the others wait and reuse it.
/// As root, PostgreSQL runs as an unprivileged service user (`postgres`); when that user cannot enter the
/// chosen folder (a clone under /root), the data lives under `/var/lib/tally/clusters/` and the folder
/// becomes a symlink to it.
public struct LocalCluster: Sendable {
    public static let defaultDataDirectory = ".tally/postgres"
    /// The superuser initdb creates, and the database Tally uses.
    public static let superuser = "tally"
    public static let defaultDatabase = "tally"
    static let stateFile = "tally-cluster.json"
    static let configFile = "tally.conf"
    static let logFile = "postmaster.log"

    /// Server settings that trade durability for speed: tests want them, real data does not.
    public enum Tuning: Sendable {
        case durable
        /// fsync off: a crash of the machine can lose the cluster. Only for throwaway test clusters.
        case fastUnsafe
    }

    /// The folder as configured (absolute); it may be a symlink to where the data really is.
    public let dataDirectory: String
    public let tuning: Tuning
    let environment: [String: String]

    public init(
        dataDirectory: String = LocalCluster.defaultDataDirectory,
        tuning: Tuning = .durable,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) {
        let url = URL(fileURLWithPath: dataDirectory, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
        self.dataDirectory = url.standardizedFileURL.path
        self.tuning = tuning
        self.environment = environment
    }

    /// The cluster folder for a command run in `directory` without `--data-dir`: the nearest existing
    /// `.tally/postgres` in it or a folder above (as git finds `.git`), else `.tally/postgres` in it.
    public static func defaultDataDirectory(from directory: String = FileManager.default.currentDirectoryPath) -> String {
        var url = URL(fileURLWithPath: directory).standardizedFileURL
        while true {
            let candidate = url.appendingPathComponent(defaultDataDirectory).path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
            let parent = url.deletingLastPathComponent()
            if parent.path == url.path { break }
            url = parent
        }
        return URL(fileURLWithPath: directory).appendingPathComponent(defaultDataDirectory).standardizedFileURL.path
    }

    /// What `tally db status` shows.
    public struct Status: Sendable, Codable, Equatable {
        public var dataDirectory: String
        /// Where the data really is, when `dataDirectory` is a symlink.
        public var storedAt: String
        public var initialized: Bool
        public var running: Bool
        public var pid: Int?
        public var port: Int?
        public var postgresVersion: String?
        public var socketDirectory: String?
        /// The connection URL without its password.
        public var url: String?
    }

    /// What Tally remembers about a cluster it created, inside the data folder.
    struct State: Codable {
        var port: Int
        var user: String
        var password: String
        var database: String
        var databaseCreated: Bool
    }

    // MARK: - Public operations

    /// Creates the cluster when missing and starts it when stopped; returns how to connect.
    /// `onProgress` hears one line per step that takes time (creating, starting, waiting for another process).
    @discardableResult
    public func start(onProgress: @Sendable (String) -> Void = { _ in }) async throws -> ConnectionSettings {
        try FileManager.default.createDirectory(
            atPath: (dataDirectory as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let lock = try await FileLock.acquire(path: dataDirectory + ".lock") {
            onProgress("Another tally process is starting the cluster at \(dataDirectory); waiting for it.")
        }
        defer { lock.unlock() }

        let user = try ServiceUser.forCurrentProcess(environment: environment)
        if !isInitialized {
            onProgress("Creating a PostgreSQL cluster in \(dataDirectory) (once).")
            try await initialize(as: user)
        }
        let binaries = try binariesForCluster()
        var state = try readState()
        let real = storedAt

        if !isRunning {
            onProgress("Starting PostgreSQL \(binaries.version) on 127.0.0.1:\(state.port).")
            try removeStaleLockFiles(state: state)
            var attempt = 0
            while true {
                try writeConfig(port: state.port, user: user)
                let result = try await Command.run(
                    binaries.path("pg_ctl"),
                    ["-D", real, "-l", real + "/" + Self.logFile, "-w", "-t", "60", "start"],
                    as: user
                )
                if result.succeeded { break }
                let log = tailOfLog()
                attempt += 1
                if attempt < 3, log.contains("could not bind") || log.contains("Address already in use") {
                    // Another program took the remembered port: choose a new one and remember it.
                    state.port = try Self.freePort()
                    try writeState(state, user: user)
                    onProgress("Port taken; retrying on 127.0.0.1:\(state.port).")
                    continue
                }
                throw TallyPostgresError(
                    .clusterStart,
                    """
                    PostgreSQL did not start (data in \(real)).
                    \(result.output.trimmingCharacters(in: .whitespacesAndNewlines))
                    Last lines of \(real)/\(Self.logFile):
                    \(log)
                    """
                )
            }
        }

        let settings = connectionSettings(state: state, database: state.database)
        if !state.databaseCreated {
            try await Self.createDatabaseIfMissing(state.database, admin: settings.with(database: "postgres"))
            state.databaseCreated = true
            try writeState(state, user: user)
        }
        return settings
    }

    /// Stops the cluster (fast shutdown: open sessions are ended, nothing committed is lost), the caller's
    /// task suspended meanwhile. Returns false when it was not running.
    @discardableResult
    public func stop() async throws -> Bool {
        guard isInitialized else { return false }
        let lock = try await FileLock.acquire(path: dataDirectory + ".lock")
        defer { lock.unlock() }
        guard let (pgCtl, arguments, user) = try stopCommand() else { return false }
        return try Self.stopped(try await Command.run(pgCtl, arguments, as: user))
    }

    /// `stop()` for callers that cannot wait asynchronously (an `atexit` handler); blocks the thread.
    @discardableResult
    public func stopBlocking() throws -> Bool {
        guard isInitialized else { return false }
        let lock = try FileLock(path: dataDirectory + ".lock")
        defer { lock.unlock() }
        guard let (pgCtl, arguments, user) = try stopCommand() else { return false }
        return try Self.stopped(try Command.run(pgCtl, arguments, as: user))
    }

    /// pg_ctl's fast stop of this cluster, as whom; nil when it does not run.
    private func stopCommand() throws -> (String, [String], ServiceUser?)? {
        let user = try ServiceUser.forCurrentProcess(environment: environment)
        guard isRunning else { return nil }
        let binaries = try binariesForCluster()
        return (binaries.path("pg_ctl"), ["-D", storedAt, "-m", "fast", "-w", "-t", "60", "stop"], user)
    }

    private static func stopped(_ result: CommandResult) throws -> Bool {
        guard result.succeeded else {
            throw TallyPostgresError(.clusterStop, "PostgreSQL did not stop: \(result.output.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return true
    }

    /// Whether the cluster exists and runs, where, and on which port. Starts nothing.
    public func status() throws -> Status {
        var status = Status(dataDirectory: dataDirectory, storedAt: storedAt, initialized: isInitialized, running: false)
        guard status.initialized else { return status }
        let state = try readState()
        let binaries = try binariesForCluster()
        status.postgresVersion = binaries.version
        status.port = state.port
        status.socketDirectory = socketDirectory
        status.url = connectionSettings(state: state, database: state.database).description
        status.running = isRunning
        if status.running { status.pid = postmasterPID() }
        return status
    }

    /// How to connect to `database` on this cluster (which must have been created).
    public func connectionSettings(database: String? = nil) throws -> ConnectionSettings {
        let state = try readState()
        return connectionSettings(state: state, database: database ?? state.database)
    }

    /// The PostgreSQL programs that match this cluster's major version.
    public func binariesForCluster() throws -> PostgresBinaries {
        let found = try PostgresBinaries.locate(environment: environment)
        guard let text = try? String(contentsOfFile: storedAt + "/PG_VERSION", encoding: .utf8),
            let clusterMajor = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), clusterMajor != found.majorVersion
        else { return found }
        let exact = "/usr/lib/postgresql/\(clusterMajor)/bin"
        if let matching = try? PostgresBinaries.locate(environment: ["TALLY_PG_BIN": exact, "PATH": ""]), matching.majorVersion == clusterMajor {
            return matching
        }
        throw TallyPostgresError(
            .binariesNotFound,
            "the cluster in \(dataDirectory) was created by PostgreSQL \(clusterMajor), but only PostgreSQL \(found.majorVersion) is installed. Install postgresql-\(clusterMajor), or move the folder away to start a new cluster."
        )
    }

    // MARK: - Layout

    /// Where the data really is: the data folder with symlinks resolved.
    public var storedAt: String {
        if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: dataDirectory) {
            return target.hasPrefix("/") ? target : ((dataDirectory as NSString).deletingLastPathComponent + "/" + target)
        }
        return dataDirectory
    }

    public var isInitialized: Bool {
        FileManager.default.fileExists(atPath: storedAt + "/" + Self.stateFile)
    }

    /// The socket lives in the data folder unless that path is too long for a Unix socket (107 bytes).
    var socketDirectory: String? {
        (storedAt + "/.s.PGSQL.65535").utf8.count < 107 ? storedAt : nil
    }

    func connectionSettings(state: State, database: String) -> ConnectionSettings {
        ConnectionSettings(
            endpoint: .tcp(host: "127.0.0.1", port: state.port),
            user: state.user,
            password: state.password,
            database: database,
            sslMode: .disable
        )
    }

}
