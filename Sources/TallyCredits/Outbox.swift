import Foundation
import Logging
import PostgresNIO
import TallyPostgres

/// A mail to send: plain text, one recipient.
public struct Mail: Sendable, Codable, Equatable {
    public var to: String
    public var subject: String
    public var text: String
}

/// A message the outbox holds until it is delivered.
public struct OutboxMessage: Sendable {
    public var id: Int64
    public var kind: String
    public var mail: Mail?
    public var attempts: Int
}

/// The transactional outbox (`outbox`): `enqueue` writes a message in the caller's transaction; `claim` takes
/// due messages for a dispatcher (one at a time each, across servers: `FOR UPDATE SKIP LOCKED` and a lease),
/// which then marks each `delivered` or `failed` (tried again after a wait that doubles, up to an hour). A
/// message still undelivered `givingUpAfter` its creation is tried no more (its `last_error` says why, for an
/// operator to see); every message leaves the table `keptFor` after its creation (`purge`).
public enum Outbox {
    public static let givingUpAfter: Duration = .seconds(3 * 24 * 3600)
    public static let keptFor: Duration = .seconds(7 * 24 * 3600)

    public static func enqueue(_ mail: Mail, on connection: DatabaseConnection) async throws {
        let payload = String(decoding: try JSONEncoder().encode(mail), as: UTF8.self)
        try await connection.execute("INSERT INTO outbox (kind, payload) VALUES ('mail', \(payload)::jsonb)")
    }

    /// Up to `limit` due messages, leased for `lease` (a dispatcher that dies lets them go after it).
    public static func claim(limit: Int = 10, lease: Duration = .seconds(60), database: Database, context: QueryContext) async throws -> [OutboxMessage] {
        try await database.connection(context) { connection in
            var messages: [OutboxMessage] = []
            for try await (id, kind, payload, attempts) in try await connection.query(
                """
                UPDATE outbox SET claimed_until = now() + make_interval(secs => \(lease.inSeconds)), attempts = attempts + 1
                WHERE id IN (
                    SELECT id FROM outbox
                    WHERE delivered_at IS NULL AND available_at <= now() AND (claimed_until IS NULL OR claimed_until < now())
                      AND created_at > now() - make_interval(secs => \(givingUpAfter.inSeconds))
                    ORDER BY id LIMIT \(limit) FOR UPDATE SKIP LOCKED)
                RETURNING id, kind, payload::text, attempts
                """
            ).decode((Int64, String, String, Int).self) {
                let mail = kind == "mail" ? try? JSONDecoder().decode(Mail.self, from: Data(payload.utf8)) : nil
                messages.append(OutboxMessage(id: id, kind: kind, mail: mail, attempts: attempts))
            }
            return messages.sorted { $0.id < $1.id }
        }
    }

    /// Marks a message delivered and erases a mail's body (it may hold a one-time link).
    public static func delivered(_ id: Int64, database: Database, context: QueryContext) async throws {
        try await database.connection(context) { connection in
            try await connection.execute(
                """
                UPDATE outbox SET delivered_at = now(), claimed_until = NULL, last_error = NULL,
                    payload = payload || '{"text": "(erased after delivery)"}'::jsonb
                WHERE id = \(id)
                """)
        }
    }

    /// Deletes messages older than `keptFor` (maintenance); those never delivered are logged with their cause.
    @discardableResult
    public static func purge(database: Database, context: QueryContext) async throws -> Int {
        try await database.connection(context) { connection in
            var purged = 0
            for try await (id, delivered, error) in try await connection.query(
                """
                DELETE FROM outbox WHERE created_at < now() - make_interval(secs => \(keptFor.inSeconds))
                RETURNING id, delivered_at IS NOT NULL, coalesce(last_error, '')
                """
            ).decode((Int64, Bool, String).self) {
                purged += 1
                if !delivered {
                    context.logger.warning("outbox message \(id) was never delivered and is deleted", metadata: ["last_error": "\(error)"])
                }
            }
            return purged
        }
    }

    /// Records a failed delivery; the message is due again after 2^(attempts-1) seconds, at most an hour.
    public static func failed(_ id: Int64, attempts: Int, error: String, database: Database, context: QueryContext) async throws {
        let wait = min(3600.0, pow(2.0, Double(max(0, attempts - 1))))
        try await database.connection(context) { connection in
            try await connection.execute(
                """
                UPDATE outbox SET claimed_until = NULL, last_error = \(String(error.prefix(1000))),
                    available_at = now() + make_interval(secs => \(wait))
                WHERE id = \(id)
                """)
        }
    }
}
