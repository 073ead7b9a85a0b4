import Foundation
import TallyPostgres

#if canImport(Glibc)
import Glibc
#endif

/// A real SMTP server for tests: aiosmtpd (PyPI, installed by .ci/run into .build/fuzz-venv) on a port, storing
/// what it receives in a Maildir.
public struct SMTPServer: Sendable {
    public let port: Int
    public let inbox: String
    let child: Command.Child

    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Starts one on `port` (a free one by default) and waits until it accepts connections.
    public static func start(port: Int? = nil, folder: String) async throws -> SMTPServer {
        let python = repository.appendingPathComponent(".build/fuzz-venv/bin/python").path
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw TallyPostgresError(.commandFailed, "aiosmtpd is not installed: run .ci/run, or python3 -m venv .build/fuzz-venv && .build/fuzz-venv/bin/pip install aiosmtpd")
        }
        let port = try port ?? LocalCluster.freePort()
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let inbox = folder + "/inbox"
        let child = try Command.spawn(
            python, ["-m", "aiosmtpd", "-n", "-l", "127.0.0.1:\(port)", "-c", "aiosmtpd.handlers.Mailbox", inbox],
            stdout: folder + "/smtp-\(port).log")
        let deadline = ContinuousClock.now + .seconds(20)
        while !accepts(port), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(100)) }
        return SMTPServer(port: port, inbox: inbox, child: child)
    }

    /// aiosmtpd does not stop on SIGTERM: it is killed.
    public func stop() async {
        kill(child.pid, SIGKILL)
        _ = await child.waitAsync()
    }

    /// The mails received, once there are `count` (or `within` has passed).
    public func mails(count: Int, within: Duration = .seconds(20)) async throws -> [String] {
        let deadline = ContinuousClock.now + within
        while true {
            let folder = inbox + "/new"
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).sorted()
            if names.count >= count || ContinuousClock.now > deadline {
                return names.compactMap { try? String(contentsOfFile: folder + "/" + $0, encoding: .utf8) }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    static func accepts(_ port: Int) -> Bool {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }
}
