import Foundation
import Hummingbird
import TallyCredits

/// `/v1/teams`, their members and invitations, and `/v1/invitations` (the caller's); every route needs a session.
public struct TeamsController: Sendable {
    let teams: Teams
    let authenticators: Authenticators
    let idempotency: IdempotencyMiddleware

    struct CreateBody: JSONBody {
        enum CodingKeys: String, CodingKey, CaseIterable { case name }
        var name: String
    }
    struct MemberBody: JSONBody {
        enum CodingKeys: String, CodingKey, CaseIterable { case email, role }
        var email: String
        var role: String?
    }
    struct TeamResponse: ResponseEncodable { var team: Team }
    struct TeamList: ResponseEncodable { var teams: [Team] }
    struct MemberList: ResponseEncodable { var members: [TeamMember] }
    struct InvitationResponse: ResponseEncodable { var invitation: Invitation }
    struct InvitationList: ResponseEncodable { var invitations: [Invitation] }

    public var endpoints: RouteCollection<TallyRequestContext> {
        let routes = RouteCollection(context: TallyRequestContext.self)
        routes.group()
            .add(middleware: authenticators.session)
            .add(middleware: idempotency)
            .post("v1/teams", use: create)
            .get("v1/teams", use: list)
            .get("v1/teams/:team/members", use: members)
            .post("v1/teams/:team/invitations", use: invite)
            .get("v1/teams/:team/invitations", use: teamInvitations)
            .delete("v1/teams/:team/invitations/:invitation", use: withdraw)
            .get("v1/invitations", use: myInvitations)
            .post("v1/invitations/:invitation/accept", use: accept)
            .delete("v1/invitations/:invitation", use: decline)
            .delete("v1/teams/:team/members/:user", use: removeMember)
        return routes
    }

    @Sendable func create(_ request: Request, context: TallyRequestContext) async throws -> EditedResponse<TeamResponse> {
        let user = try context.requireUser()
        var request = request
        let body = try await request.decode(CreateBody.self, context: context)
        return EditedResponse(status: .created, response: TeamResponse(team: try await teams.create(name: body.name, by: user, context: context.queries)))
    }

    @Sendable func list(_ request: Request, context: TallyRequestContext) async throws -> TeamList {
        TeamList(teams: try await teams.list(for: try context.requireUser(), context: context.queries))
    }

    @Sendable func members(_ request: Request, context: TallyRequestContext) async throws -> MemberList {
        let user = try context.requireUser()
        return MemberList(members: try await teams.members(of: try context.parameters.uuid("team"), for: user, context: context.queries))
    }

    /// The same answer whether the address has an account or not.
    @Sendable func invite(_ request: Request, context: TallyRequestContext) async throws -> EditedResponse<InvitationResponse> {
        let user = try context.requireUser()
        let team = try context.parameters.uuid("team")
        var request = request
        let body = try await request.decode(MemberBody.self, context: context)
        let invitation = try await teams.invite(email: body.email, role: body.role ?? "member", to: team, by: user, context: context.queries)
        return EditedResponse(status: .created, response: InvitationResponse(invitation: invitation))
    }

    @Sendable func teamInvitations(_ request: Request, context: TallyRequestContext) async throws -> InvitationList {
        let user = try context.requireUser()
        return InvitationList(invitations: try await teams.invitations(of: try context.parameters.uuid("team"), for: user, context: context.queries))
    }

    @Sendable func withdraw(_ request: Request, context: TallyRequestContext) async throws -> HTTPResponse.Status {
        let user = try context.requireUser()
        try await teams.withdraw(
            try context.parameters.uuid("invitation"), of: try context.parameters.uuid("team"), by: user, context: context.queries)
        return .noContent
    }

    @Sendable func myInvitations(_ request: Request, context: TallyRequestContext) async throws -> InvitationList {
        InvitationList(invitations: try await teams.invitations(to: try context.requireUser(), context: context.queries))
    }

    @Sendable func accept(_ request: Request, context: TallyRequestContext) async throws -> TeamResponse {
        let user = try context.requireUser()
        return TeamResponse(team: try await teams.accept(try context.parameters.uuid("invitation"), by: user, context: context.queries))
    }

    @Sendable func decline(_ request: Request, context: TallyRequestContext) async throws -> HTTPResponse.Status {
        try await teams.decline(try context.parameters.uuid("invitation"), by: try context.requireUser(), context: context.queries)
        return .noContent
    }

    @Sendable func removeMember(_ request: Request, context: TallyRequestContext) async throws -> HTTPResponse.Status {
        let user = try context.requireUser()
        try await teams.removeMember(try context.parameters.uuid("user"), from: try context.parameters.uuid("team"), by: user, context: context.queries)
        return .noContent
    }
}

extension Parameters {
    /// A path parameter that must be a UUID: a clear 404 problem otherwise, not a 500.
    func uuid(_ name: String) throws -> UUID {
        guard let text = self.get(name), let id = UUID(uuidString: text) else {
            throw CreditsError(.notFound, "\(name) must be an id like 3f2a…; \(self.get(name)?.prefix(40) ?? "") is not one")
        }
        return id
    }
}
