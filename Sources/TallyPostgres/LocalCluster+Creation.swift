import Foundation
import Logging
import PostgresNIO

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif


/// Creating the cluster: initdb, its configuration, and the state file that remembers port and password.
extension LocalCluster {
    func initialize(as user: ServiceUser?) async throws {
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
        if let user, await !user.canEnter(parent) {
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

        let result = try await Command.run(
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

    func writeConfig(port: Int, user: ServiceUser?) throws {
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

    func readState() throws -> State {
        let path = storedAt + "/" + Self.stateFile
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TallyPostgresError(
                .clusterNotInitialized,
                "no Tally cluster in \(dataDirectory); start one with `tally db start` (or set DATABASE_URL)")
        }
        do {
            return try JSONDecoder().decode(State.self, from: data)
        } catch {
            throw TallyPostgresError(.clusterUnreadable, "\(path) is damaged (\(error)); move \(dataDirectory) away to start a new cluster", underlying: error)
        }
    }

    func writeState(_ state: State, to directory: String? = nil, user: ServiceUser?) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let path = (directory ?? storedAt) + "/" + Self.stateFile
        try encoder.encode(state).write(to: URL(fileURLWithPath: path), options: .atomic)
        // It holds the superuser's password: readable by its owner only.
        _ = chmod(path, 0o600)
        user?.takeOwnership(of: path, mode: 0o600)
    }
}
