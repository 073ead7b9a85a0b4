import Foundation
import HTTPTypes
import Hummingbird
import Mustache
import TallyCredits
import TallyPostgres

/// `/portal`: the pages people who hold credits look at — their balance and where it goes, keys, teams, alerts,
/// the ledger, and for admins the webhooks. Server-rendered from mustache templates; every figure comes from the
/// library calls the JSON API makes (`Ledger.balance`, `Ledger.burnDown`, `APIKeys.list`, …), so a page and the
/// API never disagree. Also the pages the mail's links open (`/verify-email`, `/reset-password`).
public struct PortalController: Sendable {
    let auth: Auth
    let ledger: Ledger
    let keys: APIKeys
    let teams: Teams
    let alerts: BalanceAlerts
    let webhooks: Webhooks
    let trustedProxies: [AddressRange]
    /// Cookies are `Secure` when the portal is reached over HTTPS (`--public-url https://…`).
    let secure: Bool
    let templates: MustacheLibrary

    init(
        auth: Auth, ledger: Ledger, keys: APIKeys, teams: Teams, alerts: BalanceAlerts, webhooks: Webhooks, trustedProxies: [AddressRange]
    ) {
        self.auth = auth
        self.ledger = ledger
        self.keys = keys
        self.teams = teams
        self.alerts = alerts
        self.webhooks = webhooks
        self.trustedProxies = trustedProxies
        self.secure = auth.publicURL.lowercased().hasPrefix("https://")
        self.templates = Self.library
    }

    /// The templates and assets, from the bundle (`Portal/Templates`, `Portal/Assets`).
    static let folder = Bundle.module.resourcePath ?? Bundle.module.bundlePath
    static let library: MustacheLibrary = {
        var library = MustacheLibrary()
        let templates = folder + "/Templates"
        for name in (try? FileManager.default.contentsOfDirectory(atPath: templates)) ?? [] where name.hasSuffix(".mustache") {
            guard let text = try? String(contentsOfFile: templates + "/" + name, encoding: .utf8) else { continue }
            // A template that does not parse is a bug the portal's tests catch: that page answers 500 naming it.
            try? library.register(text, named: String(name.dropLast(".mustache".count)))
        }
        return library
    }()

    public var endpoints: RouteCollection<TallyRequestContext> {
        let routes = RouteCollection(context: TallyRequestContext.self)
        let portal = routes.group().add(middleware: PortalHeadersMiddleware())
        portal.get("portal/assets/:file", use: asset)
        portal.get("portal/login", use: loginPage)
        portal.post("portal/login", use: login)
        portal.get("portal/signup", use: signupPage)
        portal.post("portal/signup", use: signup)
        portal.get("verify-email", use: verifyPage)
        portal.post("portal/verify", use: verify)
        portal.post("portal/logout", use: logout)
        portal.get("portal/forgot", use: forgotPage)
        portal.post("portal/forgot", use: forgot)
        portal.get("reset-password", use: resetPage)
        portal.post("portal/reset", use: reset)
        portal.get("portal", use: balancePage)
        portal.get("portal/accounts/:team", use: balancePage)
        portal.get("portal/keys", use: keysPage)
        portal.post("portal/keys", use: createKey)
        portal.get("portal/keys/:key/revoke", use: revokeKeyPage)
        portal.post("portal/keys/:key/revoke", use: revokeKey)
        portal.get("portal/teams", use: teamsPage)
        portal.post("portal/teams", use: createTeam)
        portal.get("portal/teams/:team", use: teamPage)
        portal.post("portal/teams/:team/invitations", use: invite)
        portal.get("portal/teams/:team/members/:user/remove", use: removeMemberPage)
        portal.post("portal/teams/:team/members/:user/remove", use: removeMember)
        portal.post("portal/invitations/:invitation/accept", use: acceptInvitation)
        portal.get("portal/ledger", use: ledgerPage)
        portal.get("portal/ledger.csv", use: ledgerCSV)
        portal.get("portal/alerts", use: alertsPage)
        portal.post("portal/alerts", use: addAlert)
        portal.post("portal/alerts/:alert/delete", use: deleteAlert)
        portal.get("portal/webhooks", use: webhooksPage)
        portal.post("portal/webhooks/:webhook/deliveries/:delivery/redeliver", use: redeliver)
        return routes
    }

    /// Whether `path` is one of the portal's (HTML, not in the API document).
    public static func isPortalPath(_ path: String) -> Bool {
        path == "/portal" || path.hasPrefix("/portal/") || path == "/verify-email" || path == "/reset-password"
    }

    // MARK: - Who is signed in

    /// A signed-in person: the user, the session's token (from the cookie) and the forms' CSRF token.
    struct Visitor {
        var user: User
        var token: String
        var csrf: String
    }

    func visitor(_ request: Request, context: TallyRequestContext) async throws -> Visitor? {
        guard let token = request.cookies[PortalSecurity.sessionCookie]?.value, token.hasPrefix(Auth.sessionTokenPrefix),
              Token.mayBeGenuine(token, prefix: Auth.sessionTokenPrefix)
        else { return nil }
        do {
            let user = try await auth.user(forTokenHash: Auth.tokenHash(token), context: context.queries)
            return Visitor(user: user, token: token, csrf: PortalSecurity.csrfToken(forSession: token))
        } catch let error as CreditsError where error.code == .unauthenticated {
            return nil
        }
    }

    /// The signed-in person, or a redirect to the sign-in page.
    func requireVisitor(_ request: Request, context: TallyRequestContext) async throws -> Visitor {
        guard let visitor = try await visitor(request, context: context) else { throw Redirect(to: "/portal/login") }
        return visitor
    }

    /// The signed-in person of a form post, whose CSRF token must be the session's (403 otherwise).
    func poster(_ request: inout Request, context: TallyRequestContext) async throws -> (Visitor, FormFields) {
        let fields = try await FormFields.read(&request)
        guard let visitor = try await visitor(request, context: context) else { throw Redirect(to: "/portal/login") }
        guard let sent = fields["csrf"], PortalSecurity.same(sent, visitor.csrf) else { throw PortalError.missingToken }
        return (visitor, fields)
    }

    /// A form posted before sign-in: its token must be the form cookie's (403 otherwise).
    func anonymousForm(_ request: inout Request) async throws -> FormFields {
        let fields = try await FormFields.read(&request)
        guard let cookie = request.cookies[PortalSecurity.formCookie]?.value, let sent = fields["csrf"], PortalSecurity.same(sent, cookie) else {
            throw PortalError.missingToken
        }
        return fields
    }

    struct Redirect: Error { var to: String }

    func actor(_ visitor: Visitor, _ context: TallyRequestContext) -> Actor {
        .portal(visitor.user, requestID: context.id)
    }

    // MARK: - Rendering

    /// `template` with `values`, in the layout, for `visitor` (nil: signed out).
    func page(
        _ template: String, title: String, _ values: [String: Any] = [:], visitor: Visitor?, nav: String? = nil, status: HTTPResponse.Status = .ok,
        cookies: [Cookie] = []
    ) -> Response {
        var model = values
        model["title"] = title
        if let visitor {
            model["user"] = ["email": visitor.user.email, "isAdmin": visitor.user.isAdmin] as [String: Any]
            model["csrf"] = visitor.csrf
        }
        if let nav { model["nav"] = [nav: true] }
        guard let html = templates.render(model, withTemplate: template) else {
            return Response(status: .internalServerError, headers: [.contentType: "text/plain; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(string: "the portal's template \(template).mustache is missing or does not parse")))
        }
        var response = Response(status: status, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: html)))
        for cookie in cookies { response.setCookie(cookie) }
        return response
    }

    func redirect(_ location: String, cookies: [Cookie] = []) -> Response {
        var response = Response(status: .seeOther, headers: [.location: location])
        for cookie in cookies { response.setCookie(cookie) }
        return response
    }

    /// Runs a page, answering a redirect, an HTML error page for what went wrong (403, 404, 400 with the reason;
    /// never JSON), or the page.
    func answer(_ request: Request, context: TallyRequestContext, _ body: () async throws -> Response) async throws -> Response {
        do {
            return try await body()
        } catch let redirect as Redirect {
            return self.redirect(redirect.to)
        } catch let error as PortalError {
            return page("error", title: "Not done", ["heading": "That did not work", "detail": error.detail], visitor: try? await visitor(request, context: context), status: error.status)
        } catch let error as CreditsError {
            let status: HTTPResponse.Status = switch error.code {
            case .notFound: .notFound
            case .forbidden: .forbidden
            case .unauthenticated: .unauthorized
            case .tooManyAttempts, .serverBusy: .tooManyRequests
            case .databaseUnavailable: .serviceUnavailable
            case .conflict, .emailTaken: .conflict
            default: .badRequest
            }
            let heading = status == .notFound ? "Not found" : status == .forbidden ? "Not yours" : "That did not work"
            var response = page("error", title: heading, ["heading": heading, "detail": error.message], visitor: try? await visitor(request, context: context), status: status)
            if let wait = error.retryAfter { response.headers[.retryAfter] = "\(wait)" }
            return response
        }
    }

    // MARK: - Assets

    /// The assets by name, with their types, read from the bundle once.
    static let assets: [String: (type: String, data: Data)] = {
        var assets: [String: (type: String, data: Data)] = [:]
        for (name, type) in ["portal.css": "text/css; charset=utf-8", "portal.js": "text/javascript; charset=utf-8"] {
            if let data = FileManager.default.contents(atPath: folder + "/Assets/" + name) { assets[name] = (type, data) }
        }
        return assets
    }()

    @Sendable func asset(_ request: Request, context: TallyRequestContext) async throws -> Response {
        guard let (type, data) = Self.assets[context.parameters.get("file") ?? ""] else {
            return Response(status: .notFound, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: "no such asset")))
        }
        return Response(status: .ok, headers: [.contentType: type], body: .init(byteBuffer: ByteBuffer(data: data)))
    }

    // MARK: - Signing in and out

    /// A page with a form used before sign-in: its token in a cookie the form repeats.
    func anonymousPage(_ template: String, title: String, _ values: [String: Any] = [:], status: HTTPResponse.Status = .ok) -> Response {
        let token = PortalSecurity.formToken()
        var values = values
        values["csrf"] = token
        return page(template, title: title, values, visitor: nil, status: status,
                    cookies: [PortalSecurity.cookie(PortalSecurity.formCookie, token, secure: secure, path: "/")])
    }

    @Sendable func loginPage(_ request: Request, context: TallyRequestContext) async throws -> Response {
        if try await visitor(request, context: context) != nil { return redirect("/portal") }
        return anonymousPage("login", title: "Sign in")
    }

    @Sendable func login(_ request: Request, context: TallyRequestContext) async throws -> Response {
        var request = request
        let fields: FormFields
        do {
            fields = try await anonymousForm(&request)
        } catch let error as PortalError {
            return anonymousPage("login", title: "Sign in", ["problem": error.detail], status: error.status)
        }
        do {
            let grant = try await auth.login(
                email: fields["email"] ?? "", password: fields["password"] ?? "", from: context.clientAddress(request, trusting: trustedProxies),
                userAgent: request.headers[.userAgent], context: context.queries)
            return redirect("/portal", cookies: [
                PortalSecurity.cookie(PortalSecurity.sessionCookie, grant.token, secure: secure),
                PortalSecurity.expired(PortalSecurity.formCookie, secure: secure),
            ])
        } catch let error as CreditsError where [.invalidCredentials, .unauthenticated, .emailUnverified, .tooManyAttempts, .serverBusy, .invalidInput].contains(error.code) {
            let status: HTTPResponse.Status = error.code == .tooManyAttempts || error.code == .serverBusy ? .tooManyRequests : .unauthorized
            var response = anonymousPage("login", title: "Sign in", ["problem": error.message, "email": fields["email"] ?? ""], status: status)
            if let wait = error.retryAfter { response.headers[.retryAfter] = "\(wait)" }
            return response
        }
    }

    @Sendable func signupPage(_ request: Request, context: TallyRequestContext) async throws -> Response {
        anonymousPage("signup", title: "Sign up")
    }

    @Sendable func signup(_ request: Request, context: TallyRequestContext) async throws -> Response {
        var request = request
        return try await answer(request, context: context) {
            let fields: FormFields
            do {
                fields = try await anonymousForm(&request)
            } catch let error as PortalError {
                return anonymousPage("signup", title: "Sign up", ["problem": error.detail], status: error.status)
            }
            do {
                try await auth.signup(
                    email: fields["email"] ?? "", password: fields["password"] ?? "", name: fields.text("name"),
                    from: context.clientAddress(request, trusting: trustedProxies), context: context.queries)
            } catch let error as CreditsError where error.code == .invalidInput {
                return anonymousPage("signup", title: "Sign up", ["problem": error.message], status: .badRequest)
            }
            // The same answer for a new address and a known one: the mail says which.
            return page("signup", title: "Check your email", ["sent": true], visitor: nil, status: .accepted)
        }
    }

    @Sendable func verifyPage(_ request: Request, context: TallyRequestContext) async throws -> Response {
        // Following the link only shows the form: a mail scanner that opens links confirms nothing.
        anonymousPage("verify", title: "Confirm your email", ["token": request.uri.queryParameters.get("token") ?? ""])
    }

    @Sendable func verify(_ request: Request, context: TallyRequestContext) async throws -> Response {
        var request = request
        return try await answer(request, context: context) {
            let fields = try await anonymousForm(&request)
            let grant = try await auth.verifyEmail(
                token: fields["token"] ?? "", from: context.clientAddress(request, trusting: trustedProxies), userAgent: request.headers[.userAgent],
                context: context.queries)
            return redirect("/portal", cookies: [
                PortalSecurity.cookie(PortalSecurity.sessionCookie, grant.token, secure: secure),
                PortalSecurity.expired(PortalSecurity.formCookie, secure: secure),
            ])
        }
    }

    @Sendable func forgotPage(_ request: Request, context: TallyRequestContext) async throws -> Response {
        anonymousPage("forgot", title: "Reset your password")
    }

    @Sendable func forgot(_ request: Request, context: TallyRequestContext) async throws -> Response {
        var request = request
        return try await answer(request, context: context) {
            let fields = try await anonymousForm(&request)
            do {
                let email = try TextRules.checkEmail(fields["email"] ?? "")
                try await auth.requestPasswordReset(email: email, from: context.clientAddress(request, trusting: trustedProxies), context: context.queries)
            } catch let error as CreditsError where error.code == .invalidInput {
                return anonymousPage("forgot", title: "Reset your password", ["problem": error.message], status: .badRequest)
            }
            // The same answer whether or not an account has the address.
            return page("forgot", title: "Check your email", ["sent": true], visitor: nil, status: .accepted)
        }
    }

    @Sendable func resetPage(_ request: Request, context: TallyRequestContext) async throws -> Response {
        anonymousPage("reset", title: "Set a new password", ["token": request.uri.queryParameters.get("token") ?? ""])
    }

    @Sendable func reset(_ request: Request, context: TallyRequestContext) async throws -> Response {
        var request = request
        return try await answer(request, context: context) {
            let fields = try await anonymousForm(&request)
            do {
                _ = try await auth.resetPassword(token: fields["token"] ?? "", newPassword: fields["new_password"] ?? "", context: context.queries)
            } catch let error as CreditsError where error.code == .invalidInput {
                return anonymousPage("reset", title: "Set a new password", ["problem": error.message, "token": fields["token"] ?? ""], status: .badRequest)
            }
            return page("reset", title: "Password set", ["done": true], visitor: nil, cookies: [PortalSecurity.expired(PortalSecurity.formCookie, secure: secure)])
        }
    }

    @Sendable func logout(_ request: Request, context: TallyRequestContext) async throws -> Response {
        var request = request
        return try await answer(request, context: context) {
            let (visitor, _) = try await poster(&request, context: context)
            _ = try await auth.logout(tokenHash: Auth.tokenHash(visitor.token), context: context.queries)
            return redirect("/portal/login", cookies: [PortalSecurity.expired(PortalSecurity.sessionCookie, secure: secure)])
        }
    }
}
