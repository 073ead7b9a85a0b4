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
        let lock = try FileLock(path: dataDirectory + ".lock") {
            onProgress("Another tally process is starting the cluster at \(dataDirectory); waiting for it.")
        }
        defer { lock.unlock() }

        let user = try ServiceUser.forCurrentProcess(environment: environment)
        if !isInitialized {
            onProgress("Creating a PostgreSQL cluster in \(dataDirectory) (once).")
            try initialize(as: user)
        }
        let binaries = try binariesForCluster()
        var state = try readState()
        let real = storedAt

        if try !isRunning(binaries: binaries, as: user) {
            onProgress("Starting PostgreSQL \(binaries.version) on 127.0.0.1:\(state.port).")
            try removeStaleLockFiles(state: state)
            var attempt = 0
            while true {
                try writeConfig(port: state.port, user: user)
                let result = try Command.run(
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

    /// Stops the cluster (fast shutdown: open sessions are ended, nothing committed is lost).
    /// Returns false when it was not running.
    @discardableResult
    public func stop() throws -> Bool {
        guard isInitialized else { return false }
        let lock = try FileLock(path: dataDirectory + ".lock")
        defer { lock.unlock() }
        let user = try ServiceUser.forCurrentProcess(environment: environment)
        let binaries = try binariesForCluster()
        guard try isRunning(binaries: binaries, as: user) else { return false }
        let result = try Command.run(binaries.path("pg_ctl"), ["-D", storedAt, "-m", "fast", "-w", "-t", "60", "stop"], as: user)
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
        status.running = try isRunning(binaries: binaries, as: ServiceUser.forCurrentProcess(environment: environment))
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

    private func connectionSettings(state: State, database: String) -> ConnectionSettings {
        ConnectionSettings(
            endpoint: .tcp(host: "127.0.0.1", port: state.port),
            user: state.user,
            password: state.password,
            database: database,
            sslMode: .disable
        )
    }

    // MARK: - Creation

    private func initialize(as user: ServiceUser?) throws {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: dataDirectory, isDirectory: &isDirectory) {
            let contents = (try? fm.contentsOfDirectory(atPath: storedAt)) ?? []
            if fm.fileExists(atPath: storedAt + "/PG_VERSION") {
                throw TallyPostgresError(
                    .clusterInit,
                    "\(dataDirectory) holds a PostgreSQL cluster that Tally did not create. Use it with DATABASE_URL, or choose another --data-dir."
                )
            }
            guard isDirectory.boolValue, contents.isEmpty else {
                throw TallyPostgresError(.clusterInit, "\(dataDirectory) exists and is not an empty folder; choose another --data-dir or move it away.")
            }
            try? fm.removeItem(atPath: dataDirectory)
        }

        let binaries = try PostgresBinaries.locate(environment: environment)
        let parent = (dataDirectory as NSString).deletingLastPathComponent
        try fm.createDirectory(atPath: parent, withIntermediateDirectories: true)

        // PostgreSQL runs as the service user, who must be able to reach its folder.
        var target = dataDirectory
        if let user, !user.canEnter(parent) {
            let clusters = "/var/lib/tally/clusters"
            try fm.createDirectory(atPath: clusters, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            let name = (dataDirectory as NSString).lastPathComponent
            target = "\(clusters)/\(name)-\(Self.shortHash(dataDirectory))"
            if fm.fileExists(atPath: target + "/" + Self.stateFile) {
                // Created earlier for this same folder (a new clone at the same path): use it again.
                try fm.createSymbolicLink(atPath: dataDirectory, withDestinationPath: target)
                return
            }
            if fm.fileExists(atPath: target) {
                throw TallyPostgresError(.clusterInit, "\(target) already exists; move it away, or remove it if it holds nothing you need.")
            }
        }

        // Build in a temporary folder and rename at the end: an interrupted creation leaves no half cluster.
        let building = target + ".creating-\(getpid())"
        try? fm.removeItem(atPath: building)
        try fm.createDirectory(atPath: building, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        user?.takeOwnership(of: building)
        defer { try? fm.removeItem(atPath: building) }

        let password = randomHex(bytes: 32)
        let passwordFile = fm.temporaryDirectory.appendingPathComponent("tally-pw-\(UUID().uuidString)").path
        guard fm.createFile(atPath: passwordFile, contents: Data((password + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
            throw TallyPostgresError(.clusterInit, "could not write a temporary file in \(fm.temporaryDirectory.path)")
        }
        user?.takeOwnership(of: passwordFile, mode: 0o600)
        defer { try? fm.removeItem(atPath: passwordFile) }

        let result = try Command.run(
            binaries.path("initdb"),
            [
                "-D", building, "-U", Self.superuser, "--pwfile=\(passwordFile)", "--auth=scram-sha-256",
                "--encoding=UTF8", "--locale=C", "--no-instructions",
            ],
            as: user
        )
        guard result.succeeded else {
            throw TallyPostgresError(.clusterInit, "initdb failed:\n\(result.output.trimmingCharacters(in: .whitespacesAndNewlines))")
        }

        let conf = building + "/postgresql.conf"
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: conf))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("\n# Tally writes its settings (port, sockets) here.\ninclude_if_exists = '\(Self.configFile)'\n".utf8))
        try handle.close()

        let state = State(
            port: try Self.freePort(), user: Self.superuser, password: password, database: Self.defaultDatabase,
            databaseCreated: false)
        try writeState(state, to: building, user: user)

        try fm.moveItem(atPath: building, toPath: target)
        if target != dataDirectory {
            try fm.createSymbolicLink(atPath: dataDirectory, withDestinationPath: target)
        }
    }

    private func writeConfig(port: Int, user: ServiceUser?) throws {
        var lines = [
            "# Written by tally on every start; edit postgresql.conf for your own settings.",
            "listen_addresses = '127.0.0.1'",
            "port = \(port)",
            "unix_socket_directories = '\(socketDirectory ?? "")'",
            "unix_socket_permissions = 0700",
            // The test suite runs every test at once, each with its own database and pool.
            "max_connections = \(tuning == .fastUnsafe ? 500 : 200)",
        ]
        if tuning == .fastUnsafe {
            lines += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        }
        let path = storedAt + "/" + Self.configFile
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        user?.takeOwnership(of: path, mode: 0o600)
    }

    private func readState() throws -> State {
        let path = storedAt + "/" + Self.stateFile
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TallyPostgresError(
                .clusterNotInitialized,
                "no Tally cluster in \(dataDirectory); start one with `tally db start` (or set DATABASE_URL)")
        }
        do {
            return try JSONDecoder().decode(State.self, from: data)
        } catch {
            throw TallyPostgresError(.clusterUnreadable, "\(path) is damaged (\(error)); move \(dataDirectory) away to start a new cluster")
        }
    }

    private func writeState(_ state: State, to directory: String? = nil, user: ServiceUser?) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let path = (directory ?? storedAt) + "/" + Self.stateFile
        try encoder.encode(state).write(to: URL(fileURLWithPath: path), options: .atomic)
        // It holds the superuser's password: readable by its owner only.
        _ = chmod(path, 0o600)
        user?.takeOwnership(of: path, mode: 0o600)
    }

    // MARK: - Running state

    private func isRunning(binaries: PostgresBinaries, as user: ServiceUser?) throws -> Bool {
        // pg_ctl status exits 0 when a live process holds postmaster.pid, 3 when none does.
        try Command.run(binaries.path("pg_ctl"), ["-D", storedAt, "status"], as: user).status == 0
            && postmasterPID().map(Self.isPostgresProcess) == true
    }

    private func postmasterPID() -> Int? {
        guard let text = try? String(contentsOfFile: storedAt + "/postmaster.pid", encoding: .utf8) else { return nil }
        return text.split(separator: "\n").first.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    }

    /// After a crash, postmaster.pid (and the socket's lock file) may name a PID that a different program
    /// now has; PostgreSQL would then refuse to start. Such files are removed; a live postmaster's are kept.
    private func removeStaleLockFiles(state: State) throws {
        var files = [storedAt + "/postmaster.pid"]
        if let socketDirectory { files.append("\(socketDirectory)/.s.PGSQL.\(state.port).lock") }
        for file in files {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8),
                let pid = text.split(separator: "\n").first.flatMap({ Int($0.trimmingCharacters(in: .whitespaces)) })
            else { continue }
            if !Self.isPostgresProcess(pid: pid) {
                try? FileManager.default.removeItem(atPath: file)
            }
        }
    }

    static func isPostgresProcess(pid: Int) -> Bool {
        guard let comm = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8) else {
            #if os(Linux)
            return false
            #else
            return kill(pid_t(pid), 0) == 0
            #endif
        }
        let name = comm.trimmingCharacters(in: .whitespacesAndNewlines)
        return name == "postgres" || name == "postmaster"
    }

    private func tailOfLog(lines: Int = 15) -> String {
        guard let text = try? String(contentsOfFile: storedAt + "/" + Self.logFile, encoding: .utf8) else { return "(no log)" }
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    // MARK: - Helpers

    static func createDatabaseIfMissing(_ name: String, admin: ConnectionSettings) async throws {
        try await withSingleConnection(admin) { connection in
            let rows = try await connection.query("SELECT 1 FROM pg_database WHERE datname = \(name)", logger: Self.quietLogger)
            var exists = false
            for try await _ in rows { exists = true }
            if !exists {
                try await connection.execute("CREATE DATABASE \(unescaped: quoteIdentifier(name))", logger: Self.quietLogger)
            }
        }
    }

    /// A logger that drops everything: for queries whose failures Tally reports itself.
    public static let quietLogger = Logger(label: "tally.postgres", factory: { _ in SwiftLogNoOpLogHandler() })

    /// A port on 127.0.0.1 that nothing listens on right now.
    public static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TallyPostgresError(.clusterStart, "could not open a socket to find a free port") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0 else { throw TallyPostgresError(.clusterStart, "could not bind a socket on 127.0.0.1 to find a free port") }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    static func shortHash(_ text: String) -> String {
        // FNV-1a: stable across runs and platforms, unlike Hasher.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return String(hash, radix: 16)
    }
}
