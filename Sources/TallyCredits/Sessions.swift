import Foundation
import HummingbirdBcrypt
import PostgresNIO
import TallyPostgres

/// One of a user's live sessions, as they see it: never the token.
public struct SessionInfo: Sendable, Codable, Equatable {
    public var id: UUID
    public var createdAt: Date
    public var lastUsedAt: Date
    /// When it ends unless used again: the earlier of its idle end and its absolute end.
    public var expiresAt: Date
    public var clientAddress: String?
    public var userAgent: String?
    /// Whether this is the session that asked.
    public var current: Bool

    enum CodingKeys: String, CodingKey {
        case id, current
        case createdAt = "created_at"
        case lastUsedAt = "last_used_at"
        case expiresAt = "expires_at"
        case clientAddress = "client_address"
        case userAgent = "user_agent"
    }
}

/// Sessions users control: list them, end one, end all but this one; a password change ends the others.
extension Auth {
    /// `user`'s live sessions, newest first; `current` marks the one whose token hash is `currentHash`.
    public func sessions(of user: User, currentHash: String, context: QueryContext) async throws -> [SessionInfo] {
        let idle = sessionIdleTimeout.inSeconds
        return try await database.connection(context) { connection in
            var sessions: [SessionInfo] = []
            for try await (id, created, used, expires, address, agent, current) in try await connection.query(
                """
                SELECT id, created_at, last_used_at, least(expires_at, last_used_at + make_interval(secs => \(idle))),
                       client_address, user_agent, token_hash = \(currentHash)
                FROM sessions
                WHERE user_id = \(user.id) AND expires_at > now() AND last_used_at > now() - make_interval(secs => \(idle))
                ORDER BY created_at DESC, id
                """
            ).decode((UUID, Date, Date, Date, String?, String?, Bool).self) {
                sessions.append(SessionInfo(
                    id: id, createdAt: created, lastUsedAt: used, expiresAt: expires, clientAddress: address, userAgent: agent, current: current))
            }
            return sessions
        }
    }

    /// Ends one of `user`'s sessions (their current one too); not-found for any other id.
    public func endSession(_ id: UUID, of user: User, context: QueryContext) async throws {
        try await database.connection(context) { connection in
            var ended = false
            for try await _ in try await connection.query("DELETE FROM sessions WHERE id = \(id) AND user_id = \(user.id) RETURNING id") {
                ended = true
            }
            guard ended else { throw CreditsError(.notFound, "no session \(id.lowercasedString) among yours; GET /v1/sessions lists them") }
        }
    }

    /// Ends every session of `user` but the one whose token hash is `keeping`; how many ended.
    public func endOtherSessions(of user: User, keeping hash: String, context: QueryContext) async throws -> Int {
        try await database.connection(context) { try await Self.endSessions(of: user.id, keeping: hash, on: $0) }
    }

    /// Deletes `user`'s sessions but the one whose token hash is `keeping` (all with nil); how many.
    static func endSessions(of user: UUID, keeping hash: String?, on connection: DatabaseConnection) async throws -> Int {
        var ended = 0
        for try await _ in try await connection.query(
            "DELETE FROM sessions WHERE user_id = \(user) AND token_hash IS DISTINCT FROM \(hash) RETURNING id"
        ) { ended += 1 }
        return ended
    }

    /// Changes `user`'s password after checking the current one (a wrong one counts as a failed login from
    /// `address`), and ends every other session in the same transaction. How many sessions ended.
    public func changePassword(
        of user: User, current: String, new: String, keeping hash: String, from address: String?, context: QueryContext
    ) async throws -> Int {
        try TextRules.checkPassword(new)
        if let address { try await throttle.checkLogin(email: user.email, from: address, context: context) }
        let stored = try await database.connection(context) { connection -> String in
            for try await hash in try await connection.query("SELECT password_hash FROM users WHERE id = \(user.id)").decode(String.self) {
                return hash
            }
            throw CreditsError(.unauthenticated, "the account no longer exists")
        }
        let currentInput = Self.bcryptInput(current)
        guard try await bcrypt.run({ Bcrypt.verify(currentInput, hash: stored) }) else {
            if let address { try await throttle.loginFailed(email: user.email, from: address, context: context) }
            throw CreditsError(.forbidden, "the current password is wrong")
        }
        let cost = bcryptCost
        let newInput = Self.bcryptInput(new)
        let newHash = try await bcrypt.run { Bcrypt.hash(newInput, cost: cost) }
        return try await database.transaction(context) { connection in
            try await connection.execute("UPDATE users SET password_hash = \(newHash) WHERE id = \(user.id)")
            return try await Self.endSessions(of: user.id, keeping: hash, on: connection)
        }
    }

    /// Deletes sessions past their absolute end or idle longer than the idle timeout (the maintenance service).
    @discardableResult
    public func purgeEndedSessions(context: QueryContext) async throws -> Int {
        let idle = sessionIdleTimeout.inSeconds
        return try await database.connection(context) { connection in
            var purged = 0
            for try await _ in try await connection.query(
                "DELETE FROM sessions WHERE expires_at <= now() OR last_used_at <= now() - make_interval(secs => \(idle)) RETURNING id"
            ) { purged += 1 }
            return purged
        }
    }
}
