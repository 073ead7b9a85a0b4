import Foundation
import Hummingbird
import TallyCredits

/// `/v1/auth/signup`, `/v1/auth/verify-email`, `/v1/auth/login`, `/v1/auth/logout`, `/v1/auth/password`, `/v1/me`,
/// `/v1/sessions`.
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

    struct VerifyBody: JSONBody {
        enum CodingKeys: String, CodingKey, CaseIterable { case token }
        var token: String
    }

    struct LoginBody: JSONBody {
        enum CodingKeys: String, CodingKey, CaseIterable { case email, password }
        var email: String
        var password: String
    }

    struct Me: ResponseEncodable {
        var user: User
    }

    struct PasswordBody: JSONBody {
        enum CodingKeys: String, CodingKey, CaseIterable { case current_password, new_password }
        var current_password: String
        var new_password: String
    }

    struct ResetRequestBody: JSONBody {
        enum CodingKeys: String, CodingKey, CaseIterable { case email }
        var email: String
    }

    struct ResetBody: JSONBody {
        enum CodingKeys: String, CodingKey, CaseIterable { case token, new_password }
        var token: String
        var new_password: String
    }

    struct Accepted: ResponseEncodable { var detail: String }

    struct SessionList: ResponseEncodable { var sessions: [SessionInfo] }
    struct Ended: ResponseEncodable { var ended_sessions: Int }

    public var endpoints: RouteCollection<TallyRequestContext> {
        let routes = RouteCollection(context: TallyRequestContext.self)
        // Signing up and logging in answer with session tokens, so they take no Idempotency-Key.
        routes.post("v1/auth/signup", use: signup)
        routes.post("v1/auth/verify-email", use: verifyEmail)
        routes.post("v1/auth/login", use: login)
        routes.post("v1/auth/password-reset", use: requestReset)
        routes.post("v1/auth/password-reset/confirm", use: reset)
        routes.group()
            .add(middleware: authenticators.session)
            .get("v1/me", use: me)
        // These act on Tally's own sessions and password: a product's token (--trust-jwt) is neither.
        routes.group()
            .add(middleware: authenticators.tallySession)
            .post("v1/auth/logout", use: logout)
            .post("v1/auth/password", use: changePassword)
            .get("v1/sessions", use: sessions)
            .delete("v1/sessions/:session", use: endSession)
            .post("v1/auth/logout-others", use: endOthers)
        return routes
    }

    /// The same answer for a new address and a known one: the session comes from the mailed link.
    @Sendable func signup(_ request: Request, context: TallyRequestContext) async throws -> EditedResponse<Accepted> {
        var request = request
        let body = try await request.decode(SignupBody.self, context: context)
        let address = context.clientAddress(request, trusting: trustedProxies)
        try await auth.signup(email: body.email, password: body.password, name: body.name, from: address, context: context.queries)
        return EditedResponse(status: .accepted, response: Accepted(
            detail: "check your email: a link to confirm the address and log in is on its way (it works once, for 24 hours)"))
    }

    /// Follows the mailed link: the address is verified and a session starts.
    @Sendable func verifyEmail(_ request: Request, context: TallyRequestContext) async throws -> SessionGrant {
        var request = request
        let body = try await request.decode(VerifyBody.self, context: context)
        return try await auth.verifyEmail(
            token: body.token, from: context.clientAddress(request, trusting: trustedProxies), userAgent: request.headers[.userAgent],
            context: context.queries)
    }

    @Sendable func login(_ request: Request, context: TallyRequestContext) async throws -> SessionGrant {
        var request = request
        let body = try await request.decode(LoginBody.self, context: context)
        let address = context.clientAddress(request, trusting: trustedProxies)
        return try await auth.login(
            email: body.email, password: body.password, from: address, userAgent: request.headers[.userAgent], context: context.queries)
    }

    @Sendable func logout(_ request: Request, context: TallyRequestContext) async throws -> HTTPResponse.Status {
        let caller = try context.requireCaller()
        guard try await auth.logout(tokenHash: caller.credentialHash, context: context.queries) else {
            throw CreditsError(.unauthenticated, "the session token is unknown or already logged out")
        }
        return .noContent
    }

    /// Mails a reset link when an account has the email; the same answer either way.
    @Sendable func requestReset(_ request: Request, context: TallyRequestContext) async throws -> EditedResponse<Accepted> {
        var request = request
        let body = try await request.decode(ResetRequestBody.self, context: context)
        _ = try TextRules.checkEmail(body.email)
        try await auth.requestPasswordReset(
            email: body.email, from: context.clientAddress(request, trusting: trustedProxies), context: context.queries)
        return EditedResponse(status: .accepted, response: Accepted(
            detail: "if an account has this email, a link to reset its password is on its way; it works once, for 30 minutes"))
    }

    /// Sets a new password with a mailed token; every session of the account ends.
    @Sendable func reset(_ request: Request, context: TallyRequestContext) async throws -> Ended {
        var request = request
        let body = try await request.decode(ResetBody.self, context: context)
        return Ended(ended_sessions: try await auth.resetPassword(token: body.token, newPassword: body.new_password, context: context.queries))
    }

    /// Changes the password (the current one required) and ends every other session.
    @Sendable func changePassword(_ request: Request, context: TallyRequestContext) async throws -> Ended {
        let caller = try context.requireCaller()
        let user = try context.requireUser()
        var request = request
        let body = try await request.decode(PasswordBody.self, context: context)
        let ended = try await auth.changePassword(
            of: user, current: body.current_password, new: body.new_password, keeping: caller.credentialHash,
            from: context.clientAddress(request, trusting: trustedProxies), context: context.queries)
        return Ended(ended_sessions: ended)
    }

    @Sendable func sessions(_ request: Request, context: TallyRequestContext) async throws -> SessionList {
        let caller = try context.requireCaller()
        return SessionList(sessions: try await auth.sessions(of: try context.requireUser(), currentHash: caller.credentialHash, context: context.queries))
    }

    @Sendable func endSession(_ request: Request, context: TallyRequestContext) async throws -> HTTPResponse.Status {
        try await auth.endSession(try context.parameters.uuid("session"), of: try context.requireUser(), context: context.queries)
        return .noContent
    }

    @Sendable func endOthers(_ request: Request, context: TallyRequestContext) async throws -> Ended {
        let caller = try context.requireCaller()
        return Ended(ended_sessions: try await auth.endOtherSessions(of: try context.requireUser(), keeping: caller.credentialHash, context: context.queries))
    }

    @Sendable func me(_ request: Request, context: TallyRequestContext) async throws -> Me {
        Me(user: try context.requireUser())
    }
}

extension SessionGrant: ResponseEncodable {}
