import Foundation
import Hummingbird
import TallyCredits

/// `/v1/teams` and their members; every route needs a session.
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

    public var endpoints: RouteCollection<TallyRequestContext> {
        let routes = RouteCollection(context: TallyRequestContext.self)
        routes.group()
            .add(middleware: authenticators.session)
            .add(middleware: idempotency)
            .post("v1/teams", use: create)
            .get("v1/teams", use: list)
            .get("v1/teams/:team/members", use: members)
            .post("v1/teams/:team/members", use: addMember)
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

    @Sendable func addMember(_ request: Request, context: TallyRequestContext) async throws -> HTTPResponse.Status {
        let user = try context.requireUser()
        let team = try context.parameters.uuid("team")
        var request = request
        let body = try await request.decode(MemberBody.self, context: context)
        try await teams.addMember(email: body.email, role: body.role ?? "member", to: team, by: user, context: context.queries)
        return .created
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
