import Crypto
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif
import PostgresNIO
import TallyPostgres

/// The events Tally sends (Standard Webhooks payloads: `{type, timestamp, data}`; `data` carries the account,
/// the customer's external id and the account's `sequence` number).
public enum WebhookEventType: String, Sendable, CaseIterable, Codable {
    case thresholdCrossed = "balance.threshold_crossed"
    case recovered = "balance.recovered"
    case depleted = "balance.depleted"
    case grantExpiring = "grant.expiring"
    case topupRequested = "topup.requested"
    case topupGranted = "topup.granted"
    case topupCapped = "topup.capped"

    /// The types named, or nil for all; invalid-input naming an unknown one.
    public static func parse(_ names: [String]?) throws -> [WebhookEventType]? {
        guard let names else { return nil }
        guard !names.isEmpty else { throw CreditsError(.invalidInput, "event_types must name at least one type, or be left out for all") }
        return try names.map { name in
            guard let type = WebhookEventType(rawValue: name) else {
                throw CreditsError(.invalidInput, "unknown event type \"\(name.prefix(60))\"; the types are \(allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return type
        }
    }
}

/// Seals secrets Tally must read back (webhook signing secrets) with AES-256-GCM under the server's key, so the
/// database never holds them in the clear. The key is a file of its own (`--secret-key-file`), read on first use
/// and made then (mode 0600) when it does not exist; every server sharing a database must use the same one.
public final class SecretBox: Sendable {
    let path: String
    private let loaded = Mutex<SymmetricKey?>(nil)

    public init(path: String) {
        self.path = path
    }

    /// The key in `path` (32 bytes, base64), made when the file does not exist. Made with O_EXCL: of two servers
    /// (or two parts of one) starting on the same path, one writes the key and the other reads that one.
    func key() throws -> SymmetricKey {
        if let key = loaded.withLock({ $0 }) { return key }
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty { try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        let descriptor = Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        if descriptor >= 0 {
            let text = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }.base64EncodedString() + "\n"
            let written = text.withCString { write(descriptor, $0, strlen($0)) }
            close(descriptor)
            guard written == text.utf8.count else {
                throw CreditsError(.invalidInput, "could not write the secret key file \(path); start the server with --secret-key-file naming a writable path")
            }
        } else if errno != EEXIST {
            throw CreditsError(.invalidInput, "could not make the secret key file \(path): \(String(cString: strerror(errno))); start the server with --secret-key-file naming a writable path")
        }
        let text = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        guard let data = Data(base64Encoded: text), data.count == 32 else {
            throw CreditsError(.invalidInput, "\(path) is not a secret key (32 bytes in base64): restore the right file (every server needs the same one)")
        }
        let key = SymmetricKey(data: data)
        loaded.withLock { $0 = key }
        return key
    }

    public func seal(_ text: String) throws -> [UInt8] {
        guard let combined = try AES.GCM.seal(Data(text.utf8), using: try key()).combined else {
            throw CreditsError(.invalidInput, "sealing a secret failed")
        }
        return [UInt8](combined)
    }

    public func open(_ sealed: [UInt8]) throws -> String {
        let key = try key()
        do {
            return String(decoding: try AES.GCM.open(try AES.GCM.SealedBox(combined: Data(sealed)), using: key), as: UTF8.self)
        } catch {
            throw CreditsError(
                .invalidInput, "a webhook secret was sealed with another key than \(path): every server must use the same --secret-key-file")
        }
    }
}

/// A webhook endpoint as listed (never its secret).
public struct WebhookEndpoint: Sendable, Codable, Equatable {
    public var id: UUID
    public var url: String
    /// The account whose events it receives; nil: every account's.
    public var accountID: UUID?
    /// The event types it receives; nil: all.
    public var eventTypes: [String]?
    public var description: String?
    public var createdAt: Date
    public var disabledAt: Date?
    public var disabledReason: String?
    /// Until when the secret before the last rotation still signs too.
    public var previousSecretUntil: Date?

    enum CodingKeys: String, CodingKey {
        case id, url, description
        case accountID = "account_id"
        case eventTypes = "event_types"
        case createdAt = "created_at"
        case disabledAt = "disabled_at"
        case disabledReason = "disabled_reason"
        case previousSecretUntil = "previous_secret_until"
    }
}

/// An endpoint with its signing secret (`whsec_…`), shown when made and when rotated, never again.
public struct WebhookEndpointWithSecret: Sendable, Codable, Equatable {
    public var webhook: WebhookEndpoint
    public var secret: String
}

/// One attempt to deliver an event to an endpoint.
public struct WebhookAttempt: Sendable, Codable, Equatable {
    public var attempt: Int
    public var at: Date
    public var statusCode: Int?
    public var durationMs: Int
    public var error: String?

    enum CodingKeys: String, CodingKey {
        case attempt, at, error
        case statusCode = "status_code"
        case durationMs = "duration_ms"
    }
}

/// An event's delivery to one endpoint, with every attempt.
public struct WebhookDelivery: Sendable, Codable, Equatable {
    public var id: Int64
    public var eventID: String
    public var eventType: String
    public var sequence: Int64
    public var status: String
    public var attempts: [WebhookAttempt]
    public var nextAttemptAt: Date?
    public var deliveredAt: Date?
    public var lastError: String?
    public var createdAt: Date

    enum CodingKeys: String, CodingKey {
        case id, status, attempts, sequence
        case eventID = "event_id"
        case eventType = "event_type"
        case nextAttemptAt = "next_attempt_at"
        case deliveredAt = "delivered_at"
        case lastError = "last_error"
        case createdAt = "created_at"
    }
}

public struct WebhookDeliveryPage: Sendable, Codable, Equatable {
    public var deliveries: [WebhookDelivery]
    public var nextCursor: String?

    enum CodingKeys: String, CodingKey {
        case deliveries
        case nextCursor = "next_cursor"
    }
}

/// A delivery due now, claimed by one dispatcher: what to send and how to sign it.
public struct DueDelivery: Sendable {
    public var id: Int64
    public var eventID: String
    public var url: String
    public var payload: String
    /// The secrets that sign it: the current one, and the previous one during a rotation.
    public var secrets: [String]
    /// This attempt's number (1 for the first).
    public var attempt: Int
}

/// How an attempt went, as the dispatcher saw it.
public enum AttemptOutcome: Sendable {
    /// A 2xx.
    case delivered(status: Int, durationMs: Int)
    /// A 410: the receiver wants no more; the endpoint is disabled.
    case gone(durationMs: Int)
    /// Anything else: another status, a timeout, a refused connection. `retryAfter` from the answer's header.
    case failed(status: Int?, durationMs: Int, error: String, retryAfter: Duration?)
}

/// Webhook endpoints and their deliveries (migration 0023). Events are written by the database (`tally_emit`)
/// in the transaction of the change that causes them; `claim` and `record` are the dispatcher's side.
public struct Webhooks: Sendable {
    public let database: Database
    public let secrets: SecretBox

    /// After the first attempt fails, the next ones wait this long (Standard Webhooks' schedule): 5 s, 5 min,
    /// 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h; ten attempts in all, then the delivery has failed.
    public static let retrySchedule: [Duration] = [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400].map { .seconds($0) }
    /// How long the secret before a rotation keeps signing.
    public static let rotationOverlap: Duration = .seconds(24 * 3600)

    public init(database: Database, secrets: SecretBox) {
        self.database = database
        self.secrets = secrets
    }

    /// A new signing secret: `whsec_` and 32 random bytes in base64.
    static func newSecret() -> String {
        "whsec_" + SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }.base64EncodedString()
    }

    /// The Standard Webhooks signature of `payload`: `v1,` and the base64 HMAC-SHA256, keyed by the secret's
    /// bytes, of `{id}.{timestamp}.{payload}`.
    public static func signature(secret: String, id: String, timestamp: Int, payload: String) -> String {
        let encoded = secret.hasPrefix("whsec_") ? String(secret.dropFirst(6)) : secret
        let key = SymmetricKey(data: Data(base64Encoded: encoded) ?? Data(encoded.utf8))
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(id).\(timestamp).\(payload)".utf8), using: key)
        return "v1," + Data(mac).base64EncodedString()
    }

    // MARK: - Endpoints

    public func create(
        url: String, account owner: AccountOwner?, eventTypes: [String]?, description: String?, by actor: Actor, context: QueryContext
    ) async throws -> WebhookEndpointWithSecret {
        let types = try WebhookEventType.parse(eventTypes)?.map(\.rawValue)
        try TextRules.checkDescription(description)
        let secret = Self.newSecret()
        let sealed = ByteBuffer(bytes: try secrets.seal(secret))
        return try await database.transaction(context) { connection in
            var account: UUID?
            if let owner { account = try await Ledger(database: database).createAccount(for: owner, on: connection) }
            var made: WebhookEndpoint?
            for try await (id, created) in try await connection.query(
                """
                INSERT INTO webhook_endpoints (url, account_id, event_types, description, secret_sealed, created_by_name)
                VALUES (\(url), \(account), \(types), \(description), \(sealed), \(actor.name)) RETURNING id, created_at
                """
            ).decode((UUID, Date).self) {
                made = WebhookEndpoint(
                    id: id, url: url, accountID: account, eventTypes: types, description: description, createdAt: created, disabledAt: nil,
                    disabledReason: nil, previousSecretUntil: nil)
            }
            guard let made else { throw CreditsError(.invalidInput, "the webhook endpoint was not created") }
            try await AdminAudit.record(
                "webhook.create", by: actor, subject: ["webhook_id": .string(made.id.lowercasedString), "url": .string(url)],
                on: connection, logger: context.logger)
            return WebhookEndpointWithSecret(webhook: made, secret: secret)
        }
    }

    static let endpointColumns = "id, url, account_id, event_types, description, created_at, disabled_at, disabled_reason, previous_secret_until"
    typealias EndpointRow = (UUID, String, UUID?, [String]?, String?, Date, Date?, String?, Date?)

    static func endpoint(_ row: EndpointRow) -> WebhookEndpoint {
        WebhookEndpoint(
            id: row.0, url: row.1, accountID: row.2, eventTypes: row.3, description: row.4, createdAt: row.5, disabledAt: row.6,
            disabledReason: row.7, previousSecretUntil: row.8.flatMap { $0 > Date() ? $0 : nil })
    }

    /// Every endpoint, oldest first.
    public func list(context: QueryContext) async throws -> [WebhookEndpoint] {
        try await database.connection(context) { connection in
            var out: [WebhookEndpoint] = []
            for try await row in try await connection.query(
                "SELECT \(unescaped: Self.endpointColumns) FROM webhook_endpoints ORDER BY created_at, id"
            ).decode(EndpointRow.self) { out.append(Self.endpoint(row)) }
            return out
        }
    }

    /// Deletes an endpoint and its deliveries (kept in the admin audit log that it existed).
    public func delete(_ id: UUID, by actor: Actor, context: QueryContext) async throws {
        try await database.transaction(context) { connection in
            var url: String?
            for try await found in try await connection.query("DELETE FROM webhook_endpoints WHERE id = \(id) RETURNING url").decode(String.self) {
                url = found
            }
            guard let url else { throw Self.noEndpoint(id) }
            try await AdminAudit.record(
                "webhook.delete", by: actor, subject: ["webhook_id": .string(id.lowercasedString), "url": .string(url)],
                on: connection, logger: context.logger)
        }
    }

    /// A new secret, shown once; the previous one keeps signing (a second signature) for `rotationOverlap`.
    public func rotateSecret(_ id: UUID, by actor: Actor, context: QueryContext) async throws -> WebhookEndpointWithSecret {
        let secret = Self.newSecret()
        let sealed = ByteBuffer(bytes: try secrets.seal(secret))
        return try await database.transaction(context) { connection in
            var endpoint: WebhookEndpoint?
            for try await row in try await connection.query(
                """
                UPDATE webhook_endpoints SET previous_secret_sealed = secret_sealed, secret_sealed = \(sealed),
                    previous_secret_until = now() + make_interval(secs => \(Self.rotationOverlap.inSeconds))
                WHERE id = \(id) RETURNING \(unescaped: Self.endpointColumns)
                """
            ).decode(EndpointRow.self) { endpoint = Self.endpoint(row) }
            guard let endpoint else { throw Self.noEndpoint(id) }
            try await AdminAudit.record(
                "webhook.rotate-secret", by: actor, subject: ["webhook_id": .string(id.lowercasedString)], on: connection, logger: context.logger)
            return WebhookEndpointWithSecret(webhook: endpoint, secret: secret)
        }
    }

    /// Enables an endpoint disabled by a 410 (or by hand); deliveries still pending go out again.
    public func enable(_ id: UUID, by actor: Actor, context: QueryContext) async throws -> WebhookEndpoint {
        try await database.transaction(context) { connection in
            var endpoint: WebhookEndpoint?
            for try await row in try await connection.query(
                "UPDATE webhook_endpoints SET disabled_at = NULL, disabled_reason = NULL WHERE id = \(id) RETURNING \(unescaped: Self.endpointColumns)"
            ).decode(EndpointRow.self) { endpoint = Self.endpoint(row) }
            guard let endpoint else { throw Self.noEndpoint(id) }
            try await AdminAudit.record("webhook.enable", by: actor, subject: ["webhook_id": .string(id.lowercasedString)], on: connection, logger: context.logger)
            return endpoint
        }
    }

    static func noEndpoint(_ id: UUID) -> CreditsError {
        CreditsError(.notFound, "no webhook endpoint \(id.lowercasedString); GET /v1/webhooks lists them")
    }

    // MARK: - Deliveries

    /// An endpoint's deliveries, newest first, each with its attempts.
    public func deliveries(of endpoint: UUID, limit: Int = 20, cursor: String? = nil, context: QueryContext) async throws -> WebhookDeliveryPage {
        let below = try Ledger.pageStart(limit: limit, cursor: cursor)
        return try await database.connection(context) { connection in
            var exists = false
            for try await _ in try await connection.query("SELECT 1 FROM webhook_endpoints WHERE id = \(endpoint)") { exists = true }
            guard exists else { throw Self.noEndpoint(endpoint) }
            var deliveries: [WebhookDelivery] = []
            for try await (id, event, type, sequence, status, next, delivered, error, created, attempts) in try await connection.query(
                """
                SELECT d.id, d.event_id, e.type, e.sequence, d.status, CASE WHEN d.status = 'pending' THEN d.next_attempt_at END,
                       d.delivered_at, d.last_error, e.created_at,
                       coalesce((SELECT jsonb_agg(jsonb_build_object('attempt', a.attempt, 'at', a.at, 'status_code', a.status_code,
                                   'duration_ms', a.duration_ms, 'error', a.error) ORDER BY a.id)
                                 FROM webhook_attempts a WHERE a.delivery_id = d.id), '[]')::text
                FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
                WHERE d.endpoint_id = \(endpoint) AND d.id < \(below) ORDER BY d.id DESC LIMIT \(limit + 1)
                """
            ).decode((Int64, String, String, Int64, String, Date?, Date?, String?, Date, String).self) {
                let decoder = JSONDecoder()
                decoder.dateDecodingStrategy = .custom { decoder in
                    let text = try decoder.singleValueContainer().decode(String.self)
                    return Self.postgresTime(text) ?? Date(timeIntervalSince1970: 0)
                }
                let made = try decoder.decode([WebhookAttempt].self, from: Data(attempts.utf8))
                deliveries.append(WebhookDelivery(
                    id: id, eventID: event, eventType: type, sequence: sequence, status: status, attempts: made, nextAttemptAt: next,
                    deliveredAt: delivered, lastError: error, createdAt: created))
            }
            let more = deliveries.count > limit
            if more { deliveries.removeLast() }
            return WebhookDeliveryPage(deliveries: deliveries, nextCursor: more ? deliveries.last.map { Ledger.encodeCursor($0.id) } : nil)
        }
    }

    /// A time as `jsonb` writes one (`2026-12-06T05:40:00.123456+00:00`).
    static func postgresTime(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.date(from: text)
    }

    /// Sends a delivery again now (a failed one too), with the same `webhook-id`; its attempts so far stay listed.
    public func redeliver(_ delivery: Int64, of endpoint: UUID, by actor: Actor, context: QueryContext) async throws {
        try await database.transaction(context) { connection in
            var found = false
            for try await _ in try await connection.query(
                """
                UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(), claimed_until = NULL
                WHERE id = \(delivery) AND endpoint_id = \(endpoint) RETURNING id
                """
            ) { found = true }
            guard found else { throw CreditsError(.notFound, "no delivery \(delivery) to webhook \(endpoint.lowercasedString)") }
            try await AdminAudit.record(
                "webhook.redeliver", by: actor, subject: ["webhook_id": .string(endpoint.lowercasedString), "delivery_id": .integer(delivery)],
                on: connection, logger: context.logger)
        }
    }

    /// Up to `limit` deliveries due now to live endpoints, oldest first, each leased to this dispatcher for
    /// `lease` (one that dies lets them go after it): `FOR UPDATE SKIP LOCKED`, so servers sharing the database
    /// each take different ones.
    public func claim(limit: Int, lease: Duration, context: QueryContext) async throws -> [DueDelivery] {
        let rows = try await database.connection(context) { connection in
            var rows: [(Int64, String, String, String, ByteBuffer, ByteBuffer?, Bool, Int)] = []
            for try await row in try await connection.query(
                """
                WITH due AS (
                    SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints w ON w.id = d.endpoint_id
                    WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND (d.claimed_until IS NULL OR d.claimed_until < now())
                      AND w.disabled_at IS NULL
                    ORDER BY d.next_attempt_at, d.id LIMIT \(limit) FOR UPDATE OF d SKIP LOCKED
                ), claimed AS (
                    UPDATE webhook_deliveries d SET claimed_until = now() + make_interval(secs => \(lease.inSeconds)), attempts = d.attempts + 1
                    FROM due WHERE d.id = due.id RETURNING d.id, d.event_id, d.endpoint_id, d.attempts
                )
                SELECT c.id, c.event_id, w.url, e.payload, w.secret_sealed, w.previous_secret_sealed,
                       coalesce(w.previous_secret_until > now(), false), c.attempts
                FROM claimed c JOIN webhook_endpoints w ON w.id = c.endpoint_id JOIN webhook_events e ON e.id = c.event_id
                ORDER BY c.id
                """
            ).decode((Int64, String, String, String, ByteBuffer, ByteBuffer?, Bool, Int).self) { rows.append(row) }
            return rows
        }
        return try rows.map { id, event, url, payload, sealed, previous, overlapping, attempt in
            var keys = [try secrets.open(Array(sealed.readableBytesView))]
            if overlapping, let previous { keys.append(try secrets.open(Array(previous.readableBytesView))) }
            return DueDelivery(id: id, eventID: event, url: url, payload: payload, secrets: keys, attempt: attempt)
        }
    }

    /// Records how an attempt went: delivered; a 410 (the endpoint is disabled, the delivery failed); or a
    /// failure, due again after the schedule's wait (or the answer's `Retry-After`, up to a day), with ±10%
    /// jitter, until the tenth attempt, after which the delivery has failed.
    public func record(_ delivery: DueDelivery, _ outcome: AttemptOutcome, context: QueryContext) async throws {
        let status: Int?
        let duration: Int
        let error: String?
        switch outcome {
        case .delivered(let code, let ms): (status, duration, error) = (code, ms, nil)
        case .gone(let ms): (status, duration, error) = (410, ms, "410 Gone: the endpoint is disabled")
        case .failed(let code, let ms, let message, _): (status, duration, error) = (code, ms, String(message.prefix(1000)))
        }
        try await database.transaction(context) { connection in
            try await connection.execute(
                """
                INSERT INTO webhook_attempts (delivery_id, attempt, status_code, duration_ms, error)
                VALUES (\(delivery.id), \(delivery.attempt), \(status), \(duration), \(error))
                """)
            switch outcome {
            case .delivered:
                try await connection.execute(
                    "UPDATE webhook_deliveries SET status = 'delivered', delivered_at = now(), claimed_until = NULL, last_error = NULL WHERE id = \(delivery.id)")
            case .gone:
                try await connection.execute(
                    "UPDATE webhook_deliveries SET status = 'failed', claimed_until = NULL, last_error = \(error) WHERE id = \(delivery.id)")
                try await connection.execute(
                    """
                    UPDATE webhook_endpoints SET disabled_at = now(), disabled_reason = 'the receiver answered 410 Gone'
                    WHERE id = (SELECT endpoint_id FROM webhook_deliveries WHERE id = \(delivery.id)) AND disabled_at IS NULL
                    """)
            case .failed(_, _, _, let retryAfter):
                if delivery.attempt > Self.retrySchedule.count {
                    try await connection.execute(
                        "UPDATE webhook_deliveries SET status = 'failed', claimed_until = NULL, last_error = \(error) WHERE id = \(delivery.id)")
                } else {
                    var wait = Self.retrySchedule[delivery.attempt - 1].inSeconds
                    if let retryAfter { wait = min(max(retryAfter.inSeconds, 0), 86400) }
                    wait *= Double.random(in: 0.9...1.1)
                    try await connection.execute(
                        """
                        UPDATE webhook_deliveries SET claimed_until = NULL, last_error = \(error),
                            next_attempt_at = now() + make_interval(secs => \(wait))
                        WHERE id = \(delivery.id)
                        """)
                }
            }
        }
    }
}
