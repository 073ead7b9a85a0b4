import Foundation
import TallyPostgres

#if canImport(Glibc)
import Glibc
#endif

/// A real PgBouncer (Debian's, 1.18 here) in front of a test database, in transaction pooling mode: what most
/// hosted PostgreSQL puts between an application and the server. Each statement outside a transaction may
/// run on another server connection, and named prepared statements are not carried over.
public final class PgBouncer: Sendable {
    /// Where clients connect: the same user, password and database, through the pooler.
    public let settings: ConnectionSettings
    private let child: Command.Child
    private let directory: String

    /// Starts one in front of `server` with `poolSize` server connections per database and user.
    public init(in front: ConnectionSettings, poolSize: Int = 10) async throws {
        guard let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer", "/usr/local/bin/pgbouncer"].first(where: {
            FileManager.default.isExecutableFile(atPath: $0)
        }) else {
            throw TestSupportError("pgbouncer is not installed: `apt-get install pgbouncer` (.ci/run installs it)")
        }
        guard case .tcp(let host, let port) = front.endpoint else {
            throw TestSupportError("PgBouncer needs the server on TCP; got \(front)")
        }
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tally-pgbouncer-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let listen = try LocalCluster.freePort()
        func quoted(_ text: String) -> String { "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }
        try "\(quoted(front.user)) \(quoted(front.password ?? ""))\n".write(toFile: directory + "/users.txt", atomically: true, encoding: .utf8)
        try """
            [databases]
            * = host=\(host) port=\(port)
            [pgbouncer]
            listen_addr = 127.0.0.1
            listen_port = \(listen)
            unix_socket_dir =
            auth_type = scram-sha-256
            auth_file = \(directory)/users.txt
            pool_mode = transaction
            default_pool_size = \(poolSize)
            max_client_conn = 1000
            server_reset_query =
            """.write(toFile: directory + "/pgbouncer.ini", atomically: true, encoding: .utf8)
        // PgBouncer refuses to run as root; as root it is told to become nobody, who must read its files.
        var arguments = [directory + "/pgbouncer.ini"]
        if getuid() == 0 {
            arguments = ["-u", "nobody"] + arguments
            chmod(directory, 0o755)
            chmod(directory + "/users.txt", 0o644)
            chmod(directory + "/pgbouncer.ini", 0o644)
        }
        child = try Command.spawn(binary, arguments, stdout: directory + "/pgbouncer.log")
        var through = front
        through.endpoint = .tcp(host: "127.0.0.1", port: listen)
        settings = through
        // Up when a connection through it answers. A login through it is two (PgBouncer's, then its own to the
        // server, each with SCRAM): on a loaded machine that can take seconds, and an attempt given up too soon
        // is started again from nothing.
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            do {
                try await checkReachable(settings, timeout: .seconds(10))
                return
            } catch {
                guard ContinuousClock.now < deadline else {
                    let log = (try? String(contentsOfFile: directory + "/pgbouncer.log", encoding: .utf8)) ?? ""
                    kill(child.pid, SIGKILL)
                    throw TestSupportError("PgBouncer did not come up on port \(listen): \(error)\n\(log.suffix(2000))")
                }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    /// What PgBouncer logged.
    public var log: String { (try? String(contentsOfFile: directory + "/pgbouncer.log", encoding: .utf8)) ?? "" }

    /// Stops it and removes its files. (SIGKILL: a test process may pass SIGTERM on ignored, as a service
    /// group that handles it does, and the pooler keeps nothing worth a graceful stop.)
    public func stop() async {
        kill(child.pid, SIGKILL)
        _ = await child.waitAsync()
        try? FileManager.default.removeItem(atPath: directory)
    }
}
