import Foundation
import Hummingbird
import TallyCredits

/// `/v1/auth/signup`, `/v1/auth/login`, `/v1/auth/logout`, `/v1/me`.
public struct AuthController: Sendable {
    let auth: Auth
    let authenticators: Authenticators
    /// Proxies whose `X-Forwarded-For` names the client (`--trusted-proxy`).
    let trustedProxies: [AddressRange]

    struct SignupBody: JSONBody {
        enum CodingKeys: String, CodingKey, CaseIterable { case email, password, name }
        var email: String
        var password: String
        var name: String?
    }

    struct LoginBody: JSONBody {
        enum CodingKeys: String, CodingKey, CaseIterable { case email, password }
        var email: String
        var password: String
    }

    struct Me: ResponseEncodable {
        var user: User
    }

    public var endpoints: RouteCollection<TallyRequestContext> {
        let routes = RouteCollection(context: TallyRequestContext.self)
        // Signing up and logging in answer with session tokens, so they take no Idempotency-Key.
        routes.post("v1/auth/signup", use: signup)
        routes.post("v1/auth/login", use: login)
        routes.group()
            .add(middleware: authenticators.session)
            .post("v1/auth/logout", use: logout)
            .get("v1/me", use: me)
        return routes
    }

    @Sendable func signup(_ request: Request, context: TallyRequestContext) async throws -> EditedResponse<SessionGrant> {
        var request = request
        let body = try await request.decode(SignupBody.self, context: context)
        let address = context.clientAddress(request, trusting: trustedProxies)
        return EditedResponse(status: .created, response: try await auth.signup(
            email: body.email, password: body.password, name: body.name, from: address, context: context.queries))
    }

    @Sendable func login(_ request: Request, context: TallyRequestContext) async throws -> SessionGrant {
        var request = request
        let body = try await request.decode(LoginBody.self, context: context)
        let address = context.clientAddress(request, trusting: trustedProxies)
        return try await auth.login(email: body.email, password: body.password, from: address, context: context.queries)
    }

    @Sendable func logout(_ request: Request, context: TallyRequestContext) async throws -> HTTPResponse.Status {
        let caller = try context.requireCaller()
        guard try await auth.logout(tokenHash: caller.credentialHash, context: context.queries) else {
            throw CreditsError(.unauthenticated, "the session token is unknown or already logged out")
        }
        return .noContent
    }

    @Sendable func me(_ request: Request, context: TallyRequestContext) async throws -> Me {
        Me(user: try context.requireUser())
    }
}

extension SessionGrant: ResponseEncodable {}
