import Foundation
import PostgresNIO
import TallyPostgres

/// An invitation into a team, as its team's owners and admins and its invitee see it.
public struct Invitation: Sendable, Codable, Equatable {
    public var id: UUID
    public var teamID: UUID
    public var teamName: String
    public var email: String
    public var role: String
    /// The inviter's email.
    public var invitedBy: String
    public var createdAt: Date
    public var expiresAt: Date

    enum CodingKeys: String, CodingKey {
        case id, email, role
        case teamID = "team_id"
        case teamName = "team_name"
        case invitedBy = "invited_by"
        case createdAt = "created_at"
        case expiresAt = "expires_at"
    }
}

/// Members join by invitation: an owner or admin invites an address (the answer is the same whether anyone has
/// an account with it), a mail goes out from the outbox in the same transaction, and the user who has verified
/// that address accepts. Inviting an address again renews its pending invitation. An invitation lapses when
/// its inviter is no longer an owner or admin (migration 0017 revokes it; accepting checks again).
extension Teams {
    public static let invitationLifetime: Duration = .seconds(7 * 24 * 3600)

    public func invite(email: String, role: String, to team: UUID, by user: User, context: QueryContext) async throws -> Invitation {
        guard Self.roles.contains(role) else { throw CreditsError(.invalidInput, "role must be one of owner, admin, member") }
        let email = try TextRules.checkEmail(email)
        let base = publicURL
        return try await database.transaction(context) { connection in
            // The caller's role is read with their member row locked FOR SHARE, so a removal of the caller
            // waits for this insert to commit (and then revokes it) or comes first (and this fails).
            let mine = try await Self.lockRole(of: user.id, in: team, on: connection)
            guard let mine else { throw CreditsError(.notFound, "no team \(team.lowercasedString) among yours; GET /v1/teams lists them") }
            guard mine == "owner" || mine == "admin" else { throw CreditsError(.forbidden, "only the team's owners and admins invite members") }
            guard role != "owner" || mine == "owner" else { throw CreditsError(.forbidden, "only an owner can make another owner") }
            for try await _ in try await connection.query(
                "SELECT 1 FROM team_members m JOIN users u ON u.id = m.user_id WHERE m.team_id = \(team) AND lower(u.email) = lower(\(email))"
            ) { throw CreditsError(.conflict, "\(email) is already a member of this team") }
            var invitation: Invitation?
            for try await (id, teamName, created, expires) in try await connection.query(
                """
                INSERT INTO team_invitations (team_id, email, role, invited_by, expires_at)
                VALUES (\(team), \(email), \(role), \(user.id), now() + make_interval(secs => \(Self.invitationLifetime.inSeconds)))
                ON CONFLICT (team_id, lower(email)) WHERE accepted_at IS NULL AND revoked_at IS NULL
                DO UPDATE SET role = EXCLUDED.role, invited_by = EXCLUDED.invited_by, created_at = now(), expires_at = EXCLUDED.expires_at
                RETURNING id, (SELECT name FROM teams WHERE id = \(team)), created_at, expires_at
                """
            ).decode((UUID, String, Date, Date).self) {
                invitation = Invitation(
                    id: id, teamID: team, teamName: teamName, email: email, role: role, invitedBy: user.email, createdAt: created, expiresAt: expires)
            }
            guard let invitation else { throw CreditsError(.conflict, "the invitation was not made; try again") }
            try await Outbox.enqueue(Mail(
                to: email, subject: "\(user.email) invited you to the team \(invitation.teamName) on Tally",
                text: """
                    \(user.email) invited \(email) to join the team \(invitation.teamName) on Tally, as \(role).

                    To accept, log in with this address and open:
                    \(base)/invitations/\(invitation.id)

                    or send, with your session token:
                    curl -X POST \(base)/v1/invitations/\(invitation.id)/accept -H 'Authorization: Bearer YOUR_SESSION_TOKEN'

                    No account with this address yet? Sign up with it first (POST \(base)/v1/auth/signup) and confirm
                    the address from the mail that follows. The invitation stays open for 7 days.
                    If you do not know \(user.email), ignore this mail.
                    """), on: connection)
            return invitation
        }
    }

    /// The team's pending invitations, for its owners and admins.
    public func invitations(of team: UUID, for user: User, context: QueryContext) async throws -> [Invitation] {
        let mine = try await role(of: user, in: team, context: context)
        guard mine == "owner" || mine == "admin" else { throw CreditsError(.forbidden, "only the team's owners and admins see its invitations") }
        return try await pending(team: team, context: context)
    }

    /// The pending invitations to `user`'s (verified) address.
    public func invitations(to user: User, context: QueryContext) async throws -> [Invitation] {
        try await pending(email: user.email, context: context)
    }

    /// Withdraws a pending invitation of `team` (its owners and admins).
    public func withdraw(_ invitation: UUID, of team: UUID, by user: User, context: QueryContext) async throws {
        let mine = try await role(of: user, in: team, context: context)
        guard mine == "owner" || mine == "admin" else { throw CreditsError(.forbidden, "only the team's owners and admins withdraw invitations") }
        guard try await revoke(invitation, team: team, context: context) else {
            throw CreditsError(.notFound, "no pending invitation \(invitation.lowercasedString) in this team; GET /v1/teams/\(team.lowercasedString)/invitations lists them")
        }
    }

    /// Declines a pending invitation to `user`'s address.
    public func decline(_ invitation: UUID, by user: User, context: QueryContext) async throws {
        guard try await revoke(invitation, email: user.email, context: context) else {
            throw CreditsError(.notFound, "no pending invitation \(invitation.lowercasedString) for \(user.email); GET /v1/invitations lists yours")
        }
    }

    /// Accepts a pending invitation to `user`'s address: `user` joins the team with the invitation's role, if
    /// its inviter may still give it. The team, with the new role.
    public func accept(_ invitation: UUID, by user: User, context: QueryContext) async throws -> Team {
        let missing = CreditsError(.notFound, "no pending invitation \(invitation.lowercasedString) for \(user.email); GET /v1/invitations lists yours")
        return try await database.transaction(context) { connection in
            var found: (UUID, String, UUID, String, Date)?
            for try await row in try await connection.query(
                """
                SELECT i.team_id, i.role, i.invited_by, t.name, t.created_at
                FROM team_invitations i JOIN teams t ON t.id = i.team_id
                WHERE i.id = \(invitation) AND lower(i.email) = lower(\(user.email))
                  AND i.accepted_at IS NULL AND i.revoked_at IS NULL AND i.expires_at > now()
                FOR UPDATE OF i
                """
            ).decode((UUID, String, UUID, String, Date).self) { found = row }
            guard let (team, role, inviter, name, created) = found else { throw missing }
            let theirs = try await Self.lockRole(of: inviter, in: team, on: connection)
            guard theirs == "owner" || (theirs == "admin" && role != "owner") else {
                throw CreditsError(.forbidden, "the invitation lapsed: whoever sent it can no longer give that role; ask the team for a new one")
            }
            try await Self.refusingFormerMembers {
                try await connection.execute(
                    "INSERT INTO team_members (team_id, user_id, role) VALUES (\(team), \(user.id), \(role)) ON CONFLICT DO NOTHING")
            }
            try await connection.execute(
                "UPDATE team_invitations SET accepted_at = now(), accepted_by = \(user.id) WHERE id = \(invitation)")
            var joined = role
            for try await current in try await connection.query(
                "SELECT role FROM team_members WHERE team_id = \(team) AND user_id = \(user.id)"
            ).decode(String.self) { joined = current }
            return Team(id: team, name: name, role: joined, createdAt: created)
        }
    }

    // MARK: - Helpers

    /// `user`'s role in `team`, their member row locked FOR SHARE until the transaction ends; nil when not a member.
    static func lockRole(of user: UUID, in team: UUID, on connection: DatabaseConnection) async throws -> String? {
        for try await role in try await connection.query(
            "SELECT role FROM team_members WHERE team_id = \(team) AND user_id = \(user) FOR SHARE"
        ).decode(String.self) { return role }
        return nil
    }

    /// Pending invitations of `team`, or to `email`.
    private func pending(team: UUID? = nil, email: String? = nil, context: QueryContext) async throws -> [Invitation] {
        try await database.connection(context) { connection in
            var list: [Invitation] = []
            for try await (id, team, name, email, role, inviter, created, expires) in try await connection.query(
                """
                SELECT i.id, i.team_id, t.name, i.email, i.role, u.email, i.created_at, i.expires_at
                FROM team_invitations i JOIN teams t ON t.id = i.team_id JOIN users u ON u.id = i.invited_by
                WHERE i.accepted_at IS NULL AND i.revoked_at IS NULL AND i.expires_at > now()
                  AND (\(team)::uuid IS NULL OR i.team_id = \(team)) AND (\(email)::text IS NULL OR lower(i.email) = lower(\(email)))
                ORDER BY i.created_at, i.id
                """
            ).decode((UUID, UUID, String, String, String, String, Date, Date).self) {
                list.append(Invitation(
                    id: id, teamID: team, teamName: name, email: email, role: role, invitedBy: inviter, createdAt: created, expiresAt: expires))
            }
            return list
        }
    }

    /// Revokes the pending invitation `id` of `team`, or to `email`; false when there was none.
    private func revoke(_ id: UUID, team: UUID? = nil, email: String? = nil, context: QueryContext) async throws -> Bool {
        try await database.connection(context) { connection in
            for try await _ in try await connection.query(
                """
                UPDATE team_invitations SET revoked_at = now()
                WHERE id = \(id) AND accepted_at IS NULL AND revoked_at IS NULL
                  AND (\(team)::uuid IS NULL OR team_id = \(team)) AND (\(email)::text IS NULL OR lower(email) = lower(\(email)))
                RETURNING id
                """
            ) { return true }
            return false
        }
    }
}
