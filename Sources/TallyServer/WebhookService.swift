import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import TallyCredits
import TallyPostgres

#if canImport(Glibc)
import Glibc
#endif

/// Where webhooks may go: `http` or `https` URLs whose host resolves only to public addresses, unless
/// `--allow-private-webhooks` (a receiver on loopback, a private network, link-local or the metadata address
/// would let whoever sets up an endpoint make the server call inside its own network). Checked when an endpoint
/// is made and again before each attempt (the name may resolve elsewhere by then).
public struct WebhookAddressGuard: Sendable {
    public var allowPrivate: Bool

    static let privateRanges: [AddressRange] = [
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24",
        "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/3", "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8",
    ].compactMap(AddressRange.init)

    /// Invalid-input naming what is wrong with `text` as a receiver's URL.
    public func check(_ text: String) async throws {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
              let host = url.host, !host.isEmpty
        else { throw CreditsError(.invalidInput, "url must be an http:// or https:// URL with a host, such as https://example.com/webhooks") }
        guard text.utf8.count <= 2000 else { throw CreditsError(.invalidInput, "url is longer than 2000 characters") }
        guard !allowPrivate else { return }
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        let addresses = try await Self.resolve(bare)
        guard !addresses.isEmpty else { throw CreditsError(.invalidInput, "the url's host \(host) does not resolve") }
        for address in addresses {
            let mapped = address.lowercased().hasPrefix("::ffff:") ? String(address.dropFirst(7)) : address
            if Self.privateRanges.contains(where: { $0.contains(mapped) }) {
                throw CreditsError(
                    .invalidInput,
                    "the url's host \(host) is \(address), a loopback, private or link-local address: webhooks go to public addresses (start the server with --allow-private-webhooks to allow it)")
            }
        }
    }

    /// The addresses `host` resolves to (getaddrinfo, on NIO's thread pool: it blocks).
    static func resolve(_ host: String) async throws -> [String] {
        try await NIOThreadPool.singleton.runIfActive {
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var result: UnsafeMutablePointer<addrinfo>?
            guard getaddrinfo(host, nil, &hints, &result) == 0 else { return [] }
            defer { freeaddrinfo(result) }
            var out: [String] = []
            var next = result
            while let info = next {
                var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
                if getnameinfo(info.pointee.ai_addr, info.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0 {
                    out.append(String(cString: buffer))
                }
                next = info.pointee.ai_next
            }
            return out
        }
    }
}

/// Delivers webhooks: claims due deliveries (`Webhooks.claim`, shared with other servers by
/// `FOR UPDATE SKIP LOCKED`), sends each signed as Standard Webhooks says, and records the attempt. A server killed mid-delivery leaves its claims to lapse: another round (on any
/// server) sends them again with the same `webhook-id`.
struct WebhookService: Service {
    let webhooks: Webhooks
    let settings: WebhookSettings
    let logger: Logger

    func run() async throws {
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow, timeout: .init(connect: .seconds(5)))
        configuration.decompression = .disabled
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        let guardrail = WebhookAddressGuard(allowPrivate: settings.allowPrivate)
        do {
            try await repeatRounds(every: settings.interval, work: "webhooks", logger: logger) { context in
                // A full batch is followed at once by the next; a short one waits for the next round.
                while true {
                    let due = try await webhooks.claim(limit: 32, lease: settings.timeout * 2 + .seconds(5), context: context)
                    await withTaskGroup(of: Void.self) { group in
                        for delivery in due {
                            group.addTask {
                                let outcome = await send(delivery, client: client, guardrail: guardrail)
                                do {
                                    try await webhooks.record(delivery, outcome, context: context)
                                } catch {
                                    context.logger.warning("recording webhook attempt \(delivery.id) failed; it is sent again when its claim lapses", metadata: ["error": "\(describeForLog(error))"])
                                }
                            }
                        }
                    }
                    if due.count < 32 || Task.isCancelled { break }
                }
            }
        } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()
    }

    /// One attempt: POST the event's bytes with `webhook-id`, `webhook-timestamp` (now) and `webhook-signature`
    /// (one `v1,` signature per live secret), cut at the timeout.
    func send(_ delivery: DueDelivery, client: HTTPClient, guardrail: WebhookAddressGuard) async -> AttemptOutcome {
        let started = ContinuousClock.now
        func elapsed() -> Int { Int((ContinuousClock.now - started).inSeconds * 1000) }
        do {
            try await guardrail.check(delivery.url)
        } catch let error as CreditsError {
            return .failed(status: nil, durationMs: 0, error: error.message, retryAfter: nil)
        } catch {
            return .failed(status: nil, durationMs: 0, error: "\(error)", retryAfter: nil)
        }
        let timestamp = Int(Date().timeIntervalSince1970)
        let signatures = delivery.secrets.map {
            Webhooks.signature(secret: $0, id: delivery.eventID, timestamp: timestamp, payload: delivery.payload)
        }
        var request = HTTPClientRequest(url: delivery.url)
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.headers.add(name: "user-agent", value: "Tally-Webhooks/1")
        request.headers.add(name: "webhook-id", value: delivery.eventID)
        request.headers.add(name: "webhook-timestamp", value: String(timestamp))
        request.headers.add(name: "webhook-signature", value: signatures.joined(separator: " "))
        request.body = .bytes(ByteBuffer(string: delivery.payload))
        do {
            let response = try await client.execute(request, timeout: .milliseconds(Int64(settings.timeout.inSeconds * 1000)))
            // The body is read (up to 64 KiB) so the connection can be reused, and not kept.
            _ = try? await response.body.collect(upTo: 64 * 1024)
            let status = Int(response.status.code)
            if (200..<300).contains(status) { return .delivered(status: status, durationMs: elapsed()) }
            if status == 410 { return .gone(durationMs: elapsed()) }
            return .failed(
                status: status, durationMs: elapsed(), error: "the receiver answered \(status)",
                retryAfter: response.headers.first(name: "retry-after").flatMap(Self.retryAfter))
        } catch {
            let message = (error as? HTTPClientError) == .deadlineExceeded ? "no answer within \(Int(settings.timeout.inSeconds)) s" : "\(error)"
            return .failed(status: nil, durationMs: elapsed(), error: message, retryAfter: nil)
        }
    }

    /// `Retry-After` in seconds or as an HTTP date.
    static func retryAfter(_ value: String) -> Duration? {
        if let seconds = Int(value.trimmingCharacters(in: .whitespaces)) { return .seconds(max(0, seconds)) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: value) else { return nil }
        return .seconds(max(0, date.timeIntervalSinceNow))
    }
}

/// How webhooks are delivered (`tally serve` options).
public struct WebhookSettings: Sendable {
    /// How often due deliveries are looked for.
    public var interval: Duration = .milliseconds(100)
    /// How long a receiver has to answer.
    public var timeout: Duration = .seconds(15)
    /// Whether receivers on private, loopback and link-local addresses are allowed.
    public var allowPrivate = false
    /// How long before a grant expires its `grant.expiring` notice goes out.
    public var grantExpiringNotice: Duration = .seconds(3 * 24 * 3600)
    /// The file holding the key that seals webhook secrets.
    public var secretKeyFile = ".tally/secret.key"

    public init() {}
}
