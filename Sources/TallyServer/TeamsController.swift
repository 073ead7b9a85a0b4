import Foundation
import Hummingbird
import TallyCredits

/// `/v1/teams` and their members; every route needs a session.
public struct TeamsController: Sendable {
    public let auth: Auth
    public let teams: Teams

    public init(auth: Auth, teams: Teams) {
        self.auth = auth
        self.teams = teams
    }

    struct CreateBody: Decodable { var name: String }
    struct MemberBody: Decodable {
        var email: String
        var role: String?
    }
    struct TeamResponse: ResponseEncodable { var team: Team }
    struct TeamList: ResponseEncodable { var teams: [Team] }

    public var endpoints: RouteCollection<TallyRequestContext> {
        let routes = RouteCollection(context: TallyRequestContext.self)
        routes.post("v1/teams") { request, context -> EditedResponse<TeamResponse> in
            let user = try await auth.user(from: request)
            var request = request
            let body = try await request.decodeStrict(CreateBody.self, context: context)
            return EditedResponse(status: .created, response: TeamResponse(team: try await teams.create(name: body.name, by: user)))
        }
        routes.get("v1/teams") { request, _ -> TeamList in
            TeamList(teams: try await teams.list(for: try await auth.user(from: request)))
        }
        routes.post("v1/teams/:team/members") { request, context -> HTTPResponse.Status in
            let user = try await auth.user(from: request)
            let team = try context.parameters.uuid("team")
            var request = request
            let body = try await request.decodeStrict(MemberBody.self, context: context)
            try await teams.addMember(email: body.email, role: body.role ?? "member", to: team, by: user)
            return .created
        }
        routes.delete("v1/teams/:team/members/:user") { request, context -> HTTPResponse.Status in
            let user = try await auth.user(from: request)
            try await teams.removeMember(try context.parameters.uuid("user"), from: try context.parameters.uuid("team"), by: user)
            return .noContent
        }
        return routes
    }
}

extension Auth {
    /// The user of the request's `Authorization: Bearer` session token.
    func user(from request: Request) async throws -> User {
        guard let token = request.bearerToken else {
            throw CreditsError(.unauthenticated, "send the session token as Authorization: Bearer <token>")
        }
        return try await user(forToken: token)
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
