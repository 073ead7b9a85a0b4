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

    /// How a secured server speaks TLS: upgraded with STARTTLS, which it requires before anything else, or
    /// from the first byte (SMTPS, "implicit TLS").
    public enum TLSMode: String, Sendable { case startTLS = "starttls", implicit }

    /// A server that speaks TLS with `certificate` and `key`, in `mode`, and accepts mail only after AUTH
    /// (PLAIN or LOGIN) with `user` and `password`, which it takes only over TLS.
    public struct Secured: Sendable {
        public var certificate: String
        public var key: String
        public var mode: TLSMode
        public var user: String
        public var password: String
        public init(certificate: String, key: String, mode: TLSMode, user: String, password: String) {
            (self.certificate, self.key, self.mode, self.user, self.password) = (certificate, key, mode, user, password)
        }
    }

    /// aiosmtpd's controller, secured: TLS, AUTH required and only over TLS.
    static let securedScript = """
        import ssl, sys, threading
        from aiosmtpd.controller import Controller
        from aiosmtpd.handlers import Mailbox
        from aiosmtpd.smtp import AuthResult, LoginPassword
        port, inbox, cert, key, mode, user, password = sys.argv[1:8]
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        def authenticate(server, session, envelope, mechanism, data):
            ok = isinstance(data, LoginPassword) and data.login.decode() == user and data.password.decode() == password
            return AuthResult(success=ok, handled=False)  # not handled: aiosmtpd answers 535 itself
        # With implicit TLS the whole connection is TLS, which aiosmtpd's auth_require_tls does not see.
        tls = ({"tls_context": context, "require_starttls": True, "auth_require_tls": True} if mode == "starttls"
               else {"ssl_context": context, "auth_require_tls": False})
        Controller(Mailbox(inbox), hostname="127.0.0.1", port=int(port), authenticator=authenticate,
                   auth_required=True, **tls).start()
        print("listening", flush=True)
        threading.Event().wait()
        """

    /// Starts one on `port` (a free one by default), `secured` or plain, and waits until it accepts connections.
    public static func start(port: Int? = nil, folder: String, secured: Secured? = nil) async throws -> SMTPServer {
        let python = repository.appendingPathComponent(".build/fuzz-venv/bin/python").path
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw TallyPostgresError(.commandFailed, "aiosmtpd is not installed: run .ci/run, or python3 -m venv .build/fuzz-venv && .build/fuzz-venv/bin/pip install aiosmtpd")
        }
        let port = try port ?? LocalCluster.freePort()
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let inbox = folder + "/inbox"
        let arguments = if let secured {
            ["-c", securedScript, String(port), inbox, secured.certificate, secured.key, secured.mode.rawValue, secured.user, secured.password]
        } else {
            ["-m", "aiosmtpd", "-n", "-l", "127.0.0.1:\(port)", "-c", "aiosmtpd.handlers.Mailbox", inbox]
        }
        let child = try Command.spawn(python, arguments, stdout: folder + "/smtp-\(port).log", stderr: folder + "/smtp-\(port).err")
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
