import Foundation
import PostgresNIO
import TallyPostgres

/// A team as its members see it, with the caller's role.
public struct Team: Sendable, Codable, Equatable {
    public var id: UUID
    public var name: String
    public var role: String
    public var createdAt: Date

    enum CodingKeys: String, CodingKey {
        case id, name, role
        case createdAt = "created_at"
    }
}

/// A member of a team, as the team's members see them.
public struct TeamMember: Sendable, Codable, Equatable {
    public var userID: UUID
    public var email: String
    public var name: String?
    public var role: String
    public var joinedAt: Date

    enum CodingKeys: String, CodingKey {
        case email, name, role
        case userID = "user_id"
        case joinedAt = "joined_at"
    }
}

/// Teams and their members. Roles: owner, admin, member. Owners and admins invite (`invite`) and remove members; a team always
/// keeps at least one owner; anyone may leave. A team the caller is not in is "not found", not "forbidden",
/// so its existence does not leak.
public struct Teams: Sendable {
    public static let roles = ["owner", "admin", "member"]
    public let database: Database
    /// Where users reach this server: the base of links in mails (`--public-url`).
    public var publicURL = "http://127.0.0.1:8080"

    public init(database: Database) {
        self.database = database
    }

    public init(client: PostgresClient) {
        self.init(database: Database(client))
    }

    public func create(name: String, by user: User, context: QueryContext) async throws -> Team {
        let name = try TextRules.checkName(name)
        return try await database.transaction(context) { connection in
            var team: Team?
            for try await (id, created) in try await connection.query(
                "INSERT INTO teams (name) VALUES (\(name)) RETURNING id, created_at"
            ).decode((UUID, Date).self) {
                team = Team(id: id, name: name, role: "owner", createdAt: created)
            }
            guard let team else { throw CreditsError(.invalidInput, "the team was not created") }
            try await connection.execute("INSERT INTO team_members (team_id, user_id, role) VALUES (\(team.id), \(user.id), 'owner')")
            return team
        }
    }

    public func list(for user: User, context: QueryContext) async throws -> [Team] {
        try await database.connection(context) { connection in
            var teams: [Team] = []
            for try await (id, name, role, created) in try await connection.query(
                "SELECT t.id, t.name, m.role, t.created_at FROM teams t JOIN team_members m ON m.team_id = t.id WHERE m.user_id = \(user.id) ORDER BY t.created_at, t.id"
            ).decode((UUID, String, String, Date).self) {
                teams.append(Team(id: id, name: name, role: role, createdAt: created))
            }
            return teams
        }
    }

    /// The caller's role in `team`; not-found when they are not a member.
    public func role(of user: User, in team: UUID, context: QueryContext) async throws -> String {
        try await database.connection(context) { connection in
            for try await role in try await connection.query(
                "SELECT role FROM team_members WHERE team_id = \(team) AND user_id = \(user.id)"
            ).decode(String.self) { return role }
            throw CreditsError(.notFound, "no team \(team.lowercasedString) among yours; GET /v1/teams lists them")
        }
    }

    /// The members of `team`, for any of its members: who they are and their role.
    public func members(of team: UUID, for user: User, context: QueryContext) async throws -> [TeamMember] {
        try await database.connection(context) { connection in
            var members: [TeamMember] = []
            var isMember = false
            for try await (id, email, name, role, joined) in try await connection.query(
                """
                SELECT u.id, u.email, u.name, m.role, m.created_at
                FROM team_members m JOIN users u ON u.id = m.user_id
                WHERE m.team_id = \(team) AND EXISTS (SELECT 1 FROM team_members me WHERE me.team_id = \(team) AND me.user_id = \(user.id))
                ORDER BY m.created_at, u.id
                """
            ).decode((UUID, String, String?, String, Date).self) {
                members.append(TeamMember(userID: id, email: email, name: name, role: role, joinedAt: joined))
                if id == user.id { isMember = true }
            }
            guard isMember else { throw CreditsError(.notFound, "no team \(team.lowercasedString) among yours; GET /v1/teams lists them") }
            return members
        }
    }

    /// Work that inserts or changes a team's API key, with the database's refusal (migration 0012: the
    /// creator is no longer an owner or admin) as forbidden.
    static func refusingFormerMembers<T>(_ work: () async throws -> T) async throws -> T {
        do {
            return try await work()
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == "42501" {
            throw CreditsError(.forbidden, error.serverInfo?[.message] ?? "only the team's owners and admins create its API keys", underlying: error)
        }
    }

    /// Removes `member` from `team`. Owners and admins remove others; anyone may leave; only an owner removes
    /// another owner; the team keeps at least one owner. In the same transaction every API key the member
    /// made for the team is revoked, with the reason, so it stops spending at once.
    public func removeMember(_ member: UUID, from team: UUID, by user: User, context: QueryContext) async throws {
        let mine = try await self.role(of: user, in: team, context: context)
        guard member == user.id || mine == "owner" || mine == "admin" else {
            throw CreditsError(.forbidden, "only the team's owners and admins remove other members")
        }
        try await database.transaction(context) { connection in
            // Lock the team's owner rows so two removals cannot leave it ownerless.
            var owners: [UUID] = []
            for try await id in try await connection.query(
                "SELECT user_id FROM team_members WHERE team_id = \(team) AND role = 'owner' FOR UPDATE"
            ).decode(UUID.self) { owners.append(id) }
            if owners.contains(member), member != user.id, mine != "owner" {
                throw CreditsError(.forbidden, "only an owner removes another owner")
            }
            if owners == [member] { throw CreditsError(.conflict, "a team keeps at least one owner; make someone else owner first") }
            // Revoke with who and why first; the database revokes on the delete as well (migration 0012), which
            // catches a key whose creation committed in between.
            let reason = member == user.id ? "its creator left the team" : "its creator was removed from the team"
            try await connection.execute(
                """
                UPDATE api_keys SET revoked_at = now(), revoked_reason = \(reason), revoked_by = \(user.id)
                WHERE team_id = \(team) AND user_id = \(member) AND revoked_at IS NULL
                """)
            var removed = false
            for try await _ in try await connection.query(
                "DELETE FROM team_members WHERE team_id = \(team) AND user_id = \(member) RETURNING user_id"
            ) { removed = true }
            guard removed else { throw CreditsError(.notFound, "that user is not a member of this team") }
        }
    }
}
