import Foundation
import Synchronization
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import TallyCredits
import TallyPostgres

/// Where mail goes (`--mail-url`): `smtp://[user:password@]host[:port][?starttls=off|on|required]` (STARTTLS
/// is used when the server offers it, `required` refuses to send without it; port 587 by default), or
/// `smtps://…` (TLS from the first byte, port 465 by default); `&cafile=PATH` trusts that CA (PEM) for the
/// server's certificate instead of the system's roots. The certificate is always checked, its name included.
/// With no URL, `.eml` files (RFC 5322) in a folder, each logged with its path, so a fresh machine works
/// without a mail server.
public enum MailTransport: Sendable, Equatable {
    case files(directory: String)
    case smtp(SMTPSettings)

    public init(url: String) throws {
        guard let components = URLComponents(string: url), let scheme = components.scheme, ["smtp", "smtps"].contains(scheme),
              let host = components.host, !host.isEmpty else {
            throw CreditsError(
                .invalidInput, "--mail-url must look like smtp://user:password@mail.example.com:587 or smtps://…:465 (\(url.prefix(60)) is not one)")
        }
        let implicit = scheme == "smtps"
        var starttls = implicit ? SMTPSettings.StartTLS.off : .whenOffered
        var caFile: String?
        for item in components.queryItems ?? [] {
            switch (item.name, item.value ?? "") {
            case ("starttls", "off") where !implicit: starttls = .off
            case ("starttls", "on") where !implicit: starttls = .whenOffered
            case ("starttls", "required") where !implicit: starttls = .required
            case ("cafile", let path) where !path.isEmpty:
                guard FileManager.default.isReadableFile(atPath: path) else {
                    throw CreditsError(.invalidInput, "--mail-url names cafile=\(path), which cannot be read")
                }
                caFile = path
            default:
                throw CreditsError(
                    .invalidInput,
                    "--mail-url takes ?starttls=off|on|required (smtp:// only) and &cafile=PATH, not ?\(item.name)=\(item.value ?? "")")
            }
        }
        self = .smtp(SMTPSettings(
            host: host, port: components.port ?? (implicit ? 465 : 587), user: components.percentEncodedUser?.removingPercentEncoding,
            password: components.percentEncodedPassword?.removingPercentEncoding, startTLS: starttls, implicitTLS: implicit, caFile: caFile))
    }
}

public struct SMTPSettings: Sendable, Equatable {
    public enum StartTLS: Sendable, Equatable { case off, whenOffered, required }
    public var host: String
    public var port: Int
    public var user: String?
    public var password: String?
    public var startTLS: StartTLS
    /// TLS from the first byte (`smtps://`), not upgraded with STARTTLS.
    public var implicitTLS = false
    /// The CA (PEM) that signs the server's certificate, instead of the system's roots.
    public var caFile: String?

    public init(
        host: String, port: Int, user: String?, password: String?, startTLS: StartTLS, implicitTLS: Bool = false, caFile: String? = nil
    ) {
        (self.host, self.port, self.user, self.password, self.startTLS) = (host, port, user, password, startTLS)
        (self.implicitTLS, self.caFile) = (implicitTLS, caFile)
    }

    /// A TLS handler that checks the server's certificate against `caFile` (or the system's roots) and its name.
    func tlsHandler() throws -> NIOSSLClientHandler {
        var configuration = TLSConfiguration.makeClientConfiguration()
        if let caFile { configuration.trustRoots = .file(caFile) }
        // An address is not a name to send in SNI; the certificate is then checked against the address.
        let isAddress = AddressRange.parse(host) != nil
        return try NIOSSLClientHandler(context: try NIOSSLContext(configuration: configuration), serverHostname: isAddress ? nil : host)
    }
}

/// Delivers one mail: an RFC 5322 message written to a file or sent over SMTP.
struct MailSender: Sendable {
    let transport: MailTransport
    let from: String
    let logger: Logger

    /// The message as RFC 5322 text (CRLF line ends), its Message-ID naming the outbox row so a receiver can
    /// tell a second delivery of the same mail.
    func message(_ mail: Mail, id: Int64) -> String {
        let date = DateFormatter()
        date.locale = Locale(identifier: "en_US_POSIX")
        date.timeZone = TimeZone(identifier: "UTC")
        date.dateFormat = "EEE, dd MMM yyyy HH:mm:ss Z"
        let domain = from.split(separator: "@").last.map(String.init) ?? "localhost"
        let headers = [
            "From: Tally <\(from)>", "To: <\(mail.to)>", "Subject: \(mail.subject)", "Date: \(date.string(from: Date()))",
            "Message-ID: <tally-outbox-\(id)@\(domain)>", "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit",
        ]
        let body = mail.text.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n", omittingEmptySubsequences: false)
        return (headers + [""] + body.map(String.init)).joined(separator: "\r\n") + "\r\n"
    }

    func send(_ mail: Mail, id: Int64) async throws {
        let text = message(mail, id: id)
        switch transport {
        case .files(let directory):
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let path = "\(directory)/\(id).eml"
            try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
            logger.notice("Mail to \(mail.to) written to \(path)")
        case .smtp(let settings):
            try await SMTPClient(settings: settings).send(from: from, to: mail.to, message: text)
            logger.info("Mail to \(mail.to) sent through \(settings.host):\(settings.port)")
        }
    }
}

/// A small SMTP client (RFC 5321): EHLO, STARTTLS when offered (RFC 3207), AUTH PLAIN when given a user
/// (RFC 4954, only over TLS unless the server is on loopback), one message. Every reply is checked; a refusal
/// fails with the server's own words.
struct SMTPClient {
    let settings: SMTPSettings

    struct Refused: Error, CustomStringConvertible {
        var description: String
    }

    func send(from: String, to: String, message: String) async throws {
        // The reader is in place before the connection is: the server's greeting may come at once.
        let lines = LineReader()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in
                guard settings.implicitTLS else { return channel.pipeline.addHandler(lines) }
                return channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandlers(try settings.tlsHandler(), lines) }
            }
            .connect(host: settings.host, port: settings.port).get()
        defer { channel.close(promise: nil) }
        func reply(_ expected: Int, to what: String) async throws -> [String] {
            let reply = try await lines.reply(within: .seconds(30))
            guard reply.code == expected else {
                throw Refused(description: "the mail server \(settings.host) answered \(what) with \(reply.code) \(reply.lines.joined(separator: " "))")
            }
            return reply.lines
        }
        func say(_ line: String, expect code: Int, _ what: String? = nil) async throws -> [String] {
            do {
                try await channel.writeAndFlush(ByteBuffer(string: line + "\r\n")).get()
            } catch {
                // A write fails once the connection is gone; what broke it (a TLS handshake refused) says why.
                throw lines.failure ?? error
            }
            return try await reply(code, to: what ?? String(line.prefix(20)))
        }
        _ = try await reply(220, to: "the connection")
        var extensions = try await say("EHLO tally", expect: 250)
        var secure = settings.implicitTLS
        if !secure, settings.startTLS != .off, extensions.contains(where: { $0.uppercased().hasPrefix("STARTTLS") }) {
            _ = try await say("STARTTLS", expect: 220)
            try await channel.pipeline.addHandler(try settings.tlsHandler(), position: .first).get()
            secure = true
            extensions = try await say("EHLO tally", expect: 250)
        } else if settings.startTLS == .required {
            throw Refused(description: "the mail server \(settings.host) does not offer STARTTLS, and --mail-url says ?starttls=required")
        }
        if let user = settings.user {
            let loopback = ["127.0.0.1", "localhost", "::1"].contains(settings.host)
            guard secure || loopback else {
                throw Refused(description: "not sending the mail password to \(settings.host) without TLS (it offers no STARTTLS)")
            }
            let token = Data("\0\(user)\0\(settings.password ?? "")".utf8).base64EncodedString()
            _ = try await say("AUTH PLAIN \(token)", expect: 235, "AUTH PLAIN")
        }
        _ = try await say("MAIL FROM:<\(from)>", expect: 250)
        _ = try await say("RCPT TO:<\(to)>", expect: 250)
        _ = try await say("DATA", expect: 354)
        // Dot-stuffing (RFC 5321 4.5.2), then the end of the data.
        let stuffed = message.split(separator: "\r\n", omittingEmptySubsequences: false)
            .map { $0.hasPrefix(".") ? "." + $0 : String($0) }.joined(separator: "\r\n")
        _ = try await say(stuffed + (stuffed.hasSuffix("\r\n") ? "" : "\r\n") + ".", expect: 250, "the message")
        _ = try? await say("QUIT", expect: 221)
    }
}

/// Collects a server's reply lines ("250-…" continues, "250 …" ends a reply) for `SMTPClient`. Its state is
/// behind one `Mutex`: the channel's event loop writes it, the sending task reads it.
final class LineReader: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer

    struct Reply { var code: Int; var lines: [String] }

    private struct State {
        var buffer = ""
        var pending: [String] = []
        var replies: [Reply] = []
        var waiter: CheckedContinuation<Reply, any Error>?
        var ended: (any Error)?

        /// The waiter and what it gets, when both are there; the waiter is taken.
        mutating func due() -> (CheckedContinuation<Reply, any Error>, Result<Reply, any Error>)? {
            guard let waiter else { return nil }
            if !replies.isEmpty {
                self.waiter = nil
                return (waiter, .success(replies.removeFirst()))
            }
            if let ended {
                self.waiter = nil
                return (waiter, .failure(ended))
            }
            return nil
        }
    }

    private let state = Mutex(State())

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        let text = bytes.readString(length: bytes.readableBytes) ?? ""
        let due = state.withLock { state in
            state.buffer += text
            while let end = state.buffer.range(of: "\r\n") ?? state.buffer.range(of: "\n") {
                let line = String(state.buffer[..<end.lowerBound])
                state.buffer.removeSubrange(..<end.upperBound)
                state.pending.append(String(line.dropFirst(4)))
                if line.count < 4 || line[line.index(line.startIndex, offsetBy: 3)] != "-" {
                    state.replies.append(Reply(code: Int(line.prefix(3)) ?? 0, lines: state.pending))
                    state.pending = []
                }
            }
            return state.due()
        }
        if let (waiter, result) = due { waiter.resume(with: result) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        end(with: SMTPClient.Refused(description: "the mail server closed the connection"))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        end(with: error)
        context.close(promise: nil)
    }

    /// Records the first thing that ended the connection and hands it to a waiter.
    private func end(with error: any Error) {
        let due = state.withLock { state in
            if state.ended == nil { state.ended = error }
            return state.due()
        }
        if let (waiter, result) = due { waiter.resume(with: result) }
    }

    /// What ended the connection, once something has.
    var failure: (any Error)? { state.withLock { $0.ended } }

    func reply(within limit: Duration) async throws -> Reply {
        try await withThrowingTaskGroup(of: Reply.self) { group in
            group.addTask {
                // A timeout cancels the wait: the waiter is resumed then, or the group would wait for it forever.
                try await withTaskCancellationHandler {
                    try await withCheckedThrowingContinuation { continuation in
                        let due: (CheckedContinuation<Reply, any Error>, Result<Reply, any Error>)? = self.state.withLock { state in
                            if Task.isCancelled { return (continuation, .failure(CancellationError())) }
                            state.waiter = continuation
                            return state.due()
                        }
                        if let (waiter, result) = due { waiter.resume(with: result) }
                    }
                } onCancel: {
                    let waiter = self.state.withLock { state in
                        defer { state.waiter = nil }
                        return state.waiter
                    }
                    waiter?.resume(throwing: CancellationError())
                }
            }
            group.addTask {
                try await Task.sleep(for: limit)
                throw SMTPClient.Refused(description: "the mail server did not answer within \(limit)")
            }
            defer { group.cancelAll() }
            let reply = try await group.next()!
            return reply
        }
    }
}
