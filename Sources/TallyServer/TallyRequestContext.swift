import Foundation
import Hummingbird
import HummingbirdAuth
import NIOCore
import TallyCredits
import TallyPostgres

/// Who sent a request: a user with a session token, an API key, or the product's backend with a service key.
/// Decided once per request, from its `Authorization: Bearer` token, by `CallerAuthenticator`.
public struct Caller: Sendable {
    public enum Kind: Sendable {
        case user(User)
        case apiKey(APIKeyPrincipal)
        case service(ServiceKeyPrincipal)
    }

    public var kind: Kind
    /// The SHA-256 of the token, as stored: what scopes an `Idempotency-Key`, never the token itself.
    public var credentialHash: String

    public var user: User? {
        if case .user(let user) = kind { return user }
        return nil
    }

    public var apiKey: APIKeyPrincipal? {
        if case .apiKey(let key) = kind { return key }
        return nil
    }

    public var service: ServiceKeyPrincipal? {
        if case .service(let key) = kind { return key }
        return nil
    }
}

/// The request context every Tally route sees: Hummingbird's core context and the caller, once known.
public struct TallyRequestContext: AuthRequestContext, RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public var identity: Caller?
    /// The request's database transaction, for a request with an `Idempotency-Key`: its work joins it.
    public var transaction: RequestTransaction?
    /// The request's `Idempotency-Key`, when the route is one account operation (`IdempotencyClaim`).
    public var idempotency: IdempotencyClaim?
    /// The socket's peer (see `clientAddress` for the address throttling counts).
    public var remoteAddress: SocketAddress?

    public init(source: Source) {
        self.coreContext = .init(source: source)
        self.identity = nil
        self.transaction = nil
        self.idempotency = nil
        self.remoteAddress = source.channel.remoteAddress
    }

    /// Answers are written by `AnswerEncoder`: the same bytes each time, ids lowercase.
    public var responseEncoder: AnswerEncoder { AnswerEncoder() }

    /// What the request's calls into the credits store run with: its logger (with its request id) and its
    /// transaction, if it has one.
    var queries: QueryContext { QueryContext(logger: logger, transaction: transaction, idempotency: idempotency) }

    /// The session's user; only on routes whose authenticator takes sessions.
    func requireUser() throws -> User {
        guard let user = identity?.user else { throw CreditsError(.unauthenticated, Credential.session.missing) }
        return user
    }

    /// The API key; only on routes whose authenticator takes keys.
    func requireAPIKey() throws -> APIKeyPrincipal {
        guard let key = identity?.apiKey else { throw CreditsError(.unauthenticated, Credential.apiKey.missing) }
        return key
    }

    /// The service key; only on routes whose authenticator takes service keys.
    func requireService() throws -> ServiceKeyPrincipal {
        guard let key = identity?.service else { throw CreditsError(.unauthenticated, Credential.service.missing) }
        return key
    }

    /// How the admin audit log names who acts: the admin of the session, or the service key.
    func actor() throws -> Actor {
        if let key = identity?.service { return key.actor(requestID: id) }
        return .admin(try requireUser(), requestID: id)
    }

    /// The caller; only on routes behind an authenticator.
    func requireCaller() throws -> Caller {
        guard let caller = identity else { throw CreditsError(.unauthenticated, Credential.either.missing) }
        return caller
    }
}

/// The credentials a group of routes takes.
enum Credential: Sendable {
    case session, apiKey, either, service, sessionOrService, tallySession

    /// What a caller without the right credential is told.
    var missing: String {
        switch self {
        case .session: "this route needs a session token: log in (POST /v1/auth/login) and send Authorization: Bearer tly_sess_…"
        case .apiKey: "spending needs an API key: Authorization: Bearer tly_… (create one with POST /v1/api-keys)"
        case .either: "send a session token or an API key as Authorization: Bearer <token>"
        case .service: "this route is for the product's backend: send a service key, Authorization: Bearer tly_svc_… (an admin creates one with POST /v1/service-keys or `tally keys create --service`)"
        case .sessionOrService: "send an admin's session token or a service key as Authorization: Bearer <token>"
        case .tallySession: "this route acts on Tally's own sessions: log in (POST /v1/auth/login) and send Authorization: Bearer tly_sess_… (a product's token has no Tally session to end)"
        }
    }

    var takesSessions: Bool { self == .session || self == .either || self == .sessionOrService || self == .tallySession }
    /// Whether a product's token (`--trust-jwt`) stands for a session here.
    var takesProductTokens: Bool { self == .session || self == .either }
    var takesAPIKeys: Bool { self == .apiKey || self == .either }
    var takesServiceKeys: Bool { self == .service || self == .sessionOrService }
}

/// Fills the context's caller from the `Authorization: Bearer` token, and refuses the request (401) when the
/// token is missing, unknown, expired, revoked or of the wrong kind for the route. Every authenticated route
/// sits behind one of these, so the credential is checked before anything else the route does.
struct CallerAuthenticator: AuthenticatorMiddleware {
    typealias Context = TallyRequestContext

    let accepts: Credential
    let auth: Auth
    let keys: APIKeys
    let serviceKeys: ServiceKeys
    let productTokens: ProductTokens?
    /// Whether a recently seen API key may come from memory: only for routes whose statement checks the key is
    /// still live itself (the spend, the balance and ledger reads), so that a revocation takes effect at once
    /// everywhere. Never with an
    /// `Idempotency-Key`, whose replay runs no statement: a revoked key must not get its stored answer.
    var cachedKeys = false

    /// Authenticates, then runs the route; a key that came from the cache and that the route's statement
    /// found revoked (401) is forgotten, so the next request asks the database.
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        let caller = try await authenticate(request: request, context: context)
        context.identity = caller
        do {
            return try await next(request, context)
        } catch let error as CreditsError where error.code == .unauthenticated && cachedKeys {
            if let caller { keys.forget(keyHash: caller.credentialHash) }
            throw error
        }
    }

    func authenticate(request: Request, context: Context) async throws -> Caller? {
        guard let token = request.bearerToken else { throw CreditsError(.unauthenticated, accepts.missing) }
        let hash = Auth.tokenHash(token)
        if token.hasPrefix(ServiceKeys.tokenPrefix) {
            guard accepts.takesServiceKeys else { throw CreditsError(.unauthenticated, accepts.missing) }
            guard Token.mayBeGenuine(token, prefix: ServiceKeys.tokenPrefix) else {
                throw CreditsError(.unauthenticated, "the service key's checksum is wrong: it was mistyped or cut; copy it again")
            }
            let use = ServiceKeyUse(requestID: context.id, method: request.method.rawValue, path: request.uri.path)
            return Caller(kind: .service(try await serviceKeys.authenticate(keyHash: hash, use: use, context: context.queries)), credentialHash: hash)
        }
        if token.hasPrefix(Auth.sessionTokenPrefix) {
            guard accepts.takesSessions else { throw CreditsError(.unauthenticated, accepts.missing) }
            guard Token.mayBeGenuine(token, prefix: Auth.sessionTokenPrefix) else {
                throw CreditsError(.unauthenticated, "the session token's checksum is wrong: it was mistyped or cut; log in again")
            }
            return Caller(kind: .user(try await auth.user(forTokenHash: hash, context: context.queries)), credentialHash: hash)
        }
        if let productTokens, ProductTokens.looksLikeJWT(token) {
            guard accepts.takesProductTokens else { throw CreditsError(.unauthenticated, accepts.missing) }
            let user = try await productUser(try await productTokens.subject(of: token), context: context)
            return Caller(kind: .user(user), credentialHash: hash)
        }
        guard accepts.takesAPIKeys else { throw CreditsError(.unauthenticated, accepts.missing) }
        guard Token.mayBeGenuine(token, prefix: "tly_") else {
            throw CreditsError(.unauthenticated, "the API key's checksum is wrong: it was mistyped or cut; copy it again")
        }
        let cached = cachedKeys && request.headers[.idempotencyKey] == nil
        let key = cached ? try await keys.principal(forKeyHash: hash, context: context.queries) : try await keys.authenticate(keyHash: hash, context: context.queries)
        return Caller(kind: .apiKey(key), credentialHash: hash)
    }
}

extension CallerAuthenticator {
    /// The user customer a product's token names; never an admin, whatever the user is in Tally (the product's
    /// login does not hand out Tally's admin rights).
    func productUser(_ externalID: String, context: Context) async throws -> User {
        let customers = Customers(database: auth.database)
        if let user = try await customers.user(externalID: externalID, context: context.queries) { return user }
        // Why not: only on the way out, so a token that passes costs one statement.
        let team = try? await customers.find(externalID, context: context.queries)
        guard team?.kind == .team else {
            throw CreditsError(.unauthenticated, "the product's token names \(externalID.prefix(80)), which is no customer: create it first (PUT /v1/customers/{external_id} with a service key)")
        }
        throw CreditsError(.unauthenticated, "the product's token names \(externalID.prefix(80)), a team: a token's subject is a user")
    }
}

/// The routes' authenticators, over one `Auth`, one `APIKeys` (whose cache of keys is per application) and
/// one `ServiceKeys`.
struct Authenticators: Sendable {
    let auth: Auth
    let keys: APIKeys
    let serviceKeys: ServiceKeys
    /// The product's session tokens, when the server trusts them (`--trust-jwt`).
    var productTokens: ProductTokens? = nil

    func accepting(_ credential: Credential, cachedKeys: Bool = false) -> CallerAuthenticator {
        CallerAuthenticator(
            accepts: credential, auth: auth, keys: keys, serviceKeys: serviceKeys, productTokens: productTokens, cachedKeys: cachedKeys)
    }

    var session: CallerAuthenticator { accepting(.session) }
    /// Tally's own sessions only, never a product's token (`--trust-jwt`): logging out, sessions, the password.
    var tallySession: CallerAuthenticator { accepting(.tallySession) }
    var apiKey: CallerAuthenticator { accepting(.apiKey) }
    var either: CallerAuthenticator { accepting(.either) }
    /// For the spend: `tally_apply` refuses a revoked key in the same statement.
    var spendingKey: CallerAuthenticator { accepting(.apiKey, cachedKeys: true) }
    /// For the account reads: a session, or a key whose liveness the read's statement checks.
    var reader: CallerAuthenticator { accepting(.either, cachedKeys: true) }
    /// The product's backend: service keys (never cached: a revocation ends the next request).
    var service: CallerAuthenticator { accepting(.service) }
    /// An admin's session or a service key (`adminOr`).
    var adminOrService: CallerAuthenticator { accepting(.sessionOrService) }

    /// Admins only (403 for anyone else), behind `session`.
    var admin: AuthorizationPolicyMiddleware<ClosureAuthorizationPolicy<Caller>, TallyRequestContext, Problem> {
        AuthorizationPolicyMiddleware(
            ClosureAuthorizationPolicy { caller, _ in caller.user?.isAdmin == true },
            deniedError: Problem(CreditsError(.forbidden, "only admins grant credits, manage service keys and read the admin audit log")))
    }

    /// An admin's session, or a service key holding `scope` (403 for anyone else), behind `adminOrService`.
    func adminOr(_ scope: ServiceScope) -> ScopeMiddleware { ScopeMiddleware(scope: scope, admins: true) }

    /// A service key holding `scope` (403 for one without it), behind `service`.
    func scope(_ scope: ServiceScope) -> ScopeMiddleware { ScopeMiddleware(scope: scope, admins: false) }
}

/// Lets a request through when its service key holds the route's scope (or, with `admins`, when it comes from
/// an admin's session); 403 naming the scope otherwise. Runs after the authenticator, before the route.
struct ScopeMiddleware: RouterMiddleware {
    typealias Context = TallyRequestContext
    let scope: ServiceScope
    let admins: Bool

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let caller = try context.requireCaller()
        if let key = caller.service {
            guard key.allows(scope) else {
                throw CreditsError(
                    .forbidden,
                    "service key \(key.name) lacks the scope \(scope.rawValue) (it has \(key.scopes.sorted().map(\.rawValue).joined(separator: ", "))): create a key with it and revoke this one")
            }
        } else if !(admins && caller.user?.isAdmin == true) {
            throw CreditsError(.forbidden, "only admins and service keys with the scope \(scope.rawValue) may do this")
        }
        return try await next(request, context)
    }
}

extension Request {
    /// The token of an `Authorization: Bearer …` header.
    /// (Read on every authenticated request, so by bytes: no splitting, lowercasing or Foundation trimming.)
    var bearerToken: String? {
        guard let value = headers[.authorization] else { return nil }
        let bytes = Array(value.utf8)
        let scheme = Array("bearer".utf8)
        guard bytes.count > scheme.count, bytes[scheme.count] == UInt8(ascii: " "),
              zip(bytes, scheme).allSatisfy({ $0 | 0x20 == $1 }) else { return nil }
        let isSpace = { (byte: UInt8) in byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
        var token = bytes[(scheme.count + 1)...]
        while let first = token.first, isSpace(first) { token = token.dropFirst() }
        while let last = token.last, isSpace(last) { token = token.dropLast() }
        return token.isEmpty ? nil : String(decoding: token, as: UTF8.self)
    }
}
