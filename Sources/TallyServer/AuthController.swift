import Foundation
import Hummingbird
import TallyCredits

/// `/v1/auth/signup`, `/v1/auth/login`, `/v1/auth/logout`, `/v1/me`.
public struct AuthController: Sendable {
    public let auth: Auth

    public init(auth: Auth) {
        self.auth = auth
    }

    struct SignupBody: Decodable {
        var email: String
        var password: String
        var name: String?
    }

    struct LoginBody: Decodable {
        var email: String
        var password: String
    }

    struct Me: ResponseEncodable {
        var user: User
    }

    public var endpoints: RouteCollection<TallyRequestContext> {
        let routes = RouteCollection(context: TallyRequestContext.self)
        routes.post("v1/auth/signup") { request, context -> EditedResponse<SessionGrant> in
            var request = request
            let body = try await request.decodeStrict(SignupBody.self, context: context)
            return EditedResponse(status: .created, response: try await auth.signup(email: body.email, password: body.password, name: body.name))
        }
        routes.post("v1/auth/login") { request, context -> SessionGrant in
            var request = request
            let body = try await request.decodeStrict(LoginBody.self, context: context)
            return try await auth.login(email: body.email, password: body.password)
        }
        routes.post("v1/auth/logout") { request, _ -> HTTPResponse.Status in
            guard let token = request.bearerToken else { throw CreditsError(.unauthenticated, "send the session token as Authorization: Bearer <token>") }
            guard try await auth.logout(token: token) else { throw CreditsError(.unauthenticated, "the session token is unknown or already logged out") }
            return .noContent
        }
        routes.get("v1/me") { request, _ -> Me in
            Me(user: try await auth.user(from: request))
        }
        return routes
    }
}

extension SessionGrant: ResponseEncodable {}
