import Foundation
import Logging
import PostgresNIO
import TallyPostgres

/// Who did an administrative act: an admin through the API (with the request's id), or an operator at the
/// command line (the command and the OS user).
public struct Actor: Sendable, Equatable {
    public var userID: UUID?
    public var name: String
    public var requestID: String?

    public static func admin(_ user: User, requestID: String) -> Actor {
        Actor(userID: user.id, name: "admin \(user.email)", requestID: requestID)
    }

    /// A signed-in person acting on their own account (or a team's they manage) in the portal.
    public static func portal(_ user: User, requestID: String) -> Actor {
        Actor(userID: user.id, name: "user \(user.email) (portal)", requestID: requestID)
    }

    public static func `operator`(_ command: String) -> Actor {
        let account = ProcessInfo.processInfo.environment["SUDO_USER"] ?? ProcessInfo.processInfo.environment["USER"] ?? "unknown"
        return Actor(userID: nil, name: "operator \(account) (\(command))", requestID: nil)
    }
}

/// One entry of the admin audit log.
public struct AdminAuditEntry: Sendable, Codable, Equatable {
    public var id: Int64
    public var at: Date
    public var actorUserID: UUID?
    public var actor: String
    public var action: String
    public var requestID: String?
    public var subject: JSONValue

    enum CodingKeys: String, CodingKey {
        case id, at, actor, action, subject
        case actorUserID = "actor_user_id"
        case requestID = "request_id"
    }
}

/// A page of the admin audit log, newest first; `next_cursor` fetches the next (older) page.
public struct AdminAuditPage: Sendable, Codable, Equatable {
    public var entries: [AdminAuditEntry]
    public var nextCursor: String?

    enum CodingKeys: String, CodingKey {
        case entries
        case nextCursor = "next_cursor"
    }
}

/// The admin audit log (`admin_audit`, append-only in the database): every administrative act is written in
/// the transaction that does it, and logged at notice.
public enum AdminAudit {
    static func record(
        _ action: String, by actor: Actor, subject: [String: JSONValue], on connection: DatabaseConnection, logger: Logger
    ) async throws {
        let json = String(decoding: try JSONEncoder().encode(JSONValue.object(subject)), as: UTF8.self)
        try await connection.execute(
            """
            INSERT INTO admin_audit (actor_user_id, actor, action, request_id, subject)
            VALUES (\(actor.userID), \(actor.name), \(action), \(actor.requestID), \(json)::jsonb)
            """)
        var metadata: Logger.Metadata = ["tally.actor": "\(actor.name)", "tally.action": "\(action)"]
        for (key, value) in subject { metadata["tally.\(key)"] = "\(value)" }
        logger.notice("administrative act: \(action) by \(actor.name)", metadata: metadata)
    }

    /// The log, newest first, `limit` entries (1…100) below `cursor` (a previous page's `next_cursor`).
    public static func page(database: Database, limit: Int = 50, cursor: String? = nil, context: QueryContext) async throws -> AdminAuditPage {
        let below = try Ledger.pageStart(limit: limit, cursor: cursor)
        return try await database.connection(context) { connection in
            var entries: [AdminAuditEntry] = []
            for try await (id, at, userID, actor, action, requestID, subject) in try await connection.query(
                "SELECT id, at, actor_user_id, actor, action, request_id, subject::text FROM admin_audit WHERE id < \(below) ORDER BY id DESC LIMIT \(limit + 1)"
            ).decode((Int64, Date, UUID?, String, String, String?, String).self) {
                let value = try JSONDecoder().decode(JSONValue.self, from: Data(subject.utf8))
                entries.append(AdminAuditEntry(id: id, at: at, actorUserID: userID, actor: actor, action: action, requestID: requestID, subject: value))
            }
            let more = entries.count > limit
            if more { entries.removeLast() }
            return AdminAuditPage(entries: entries, nextCursor: more ? entries.last.map { Ledger.encodeCursor($0.id) } : nil)
        }
    }
}
