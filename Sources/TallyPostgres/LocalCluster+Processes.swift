import Foundation
import Logging
import PostgresNIO

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif


/// Whether the cluster runs, its postmaster, stale lock files, and small helpers.
extension LocalCluster {
    /// Whether the process postmaster.pid names is a PostgreSQL server working in this cluster's folder: what
    /// `pg_ctl status` checks, read from /proc instead of started as a program (no thread waits for a child),
    /// and stricter: a PID reused by another cluster's postgres does not count.
    var isRunning: Bool {
        guard let pid = postmasterPID(), Self.isPostgresProcess(pid: pid) else { return false }
        #if os(Linux)
        guard let directory = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd") else { return true }
        return URL(fileURLWithPath: directory).resolvingSymlinksInPath().path
            == URL(fileURLWithPath: storedAt).resolvingSymlinksInPath().path
        #else
        return true
        #endif
    }

    func postmasterPID() -> Int? {
        guard let text = try? String(contentsOfFile: storedAt + "/postmaster.pid", encoding: .utf8) else { return nil }
        return text.split(separator: "\n").first.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    }

    /// After a crash, postmaster.pid (and the socket's lock file) may name a PID that a different program
    /// now has; PostgreSQL would then refuse to start. Such files are removed; a live postmaster's are kept.
    func removeStaleLockFiles(state: State) throws {
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

    func tailOfLog(lines: Int = 15) -> String {
        guard let text = try? String(contentsOfFile: storedAt + "/" + Self.logFile, encoding: .utf8) else { return "(no log)" }
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }


    static func createDatabaseIfMissing(_ name: String, admin: ConnectionSettings) async throws {
        try await withSingleConnection(admin) { connection in
            let rows = try await connection.query("SELECT 1 FROM pg_database WHERE datname = \(name)")
            var exists = false
            for try await _ in rows { exists = true }
            if !exists {
                try await connection.execute("CREATE DATABASE \(unescaped: quoteIdentifier(name))")
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
