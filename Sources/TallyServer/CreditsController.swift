import Foundation
import Hummingbird
import Metrics
import TallyCredits

/// API keys, grants, balance and consume.
public struct CreditsController: Sendable {
    let keys: APIKeys
    let ledger: Ledger
    let teams: Teams
    let authenticators: Authenticators
    let idempotency: IdempotencyMiddleware

    /// How long a hold lasts when the request does not say.
    public static let defaultHoldTTL = 900

    public var endpoints: RouteCollection<TallyRequestContext> {
        let routes = RouteCollection(context: TallyRequestContext.self)
        routes.group()
            .add(middleware: authenticators.session)
            .add(middleware: idempotency)
            .post("v1/api-keys", use: createKey)
            .get("v1/api-keys", use: listKeys)
            .delete("v1/api-keys/:key", use: revokeKey)
        routes.group()
            .add(middleware: authenticators.adminOrService)
            .add(middleware: authenticators.adminOr(.grantsWrite))
            .add(middleware: idempotency)
            .post("v1/admin/grants", use: grant)
        routes.group()
            .add(middleware: authenticators.session)
            .add(middleware: authenticators.admin)
            .get("v1/admin/audit", use: adminAudit)
        routes.group()
            .add(middleware: authenticators.reader)
            .get("v1/credits/balance", use: balance)
            .get("v1/credits/transactions", use: transactions)
            .get("v1/credits/burndown", use: burnDown)
        // Each one account operation: with an Idempotency-Key too, it goes in its account's batch.
        routes.group()
            .add(middleware: authenticators.spendingKey)
            .add(middleware: idempotency.forAccountOperations)
            .post("v1/credits/consume", use: consume)
        routes.group()
            .add(middleware: authenticators.apiKey)
            .add(middleware: idempotency.forAccountOperations)
            .post("v1/credits/holds", use: hold)
        routes.group()
            .add(middleware: authenticators.reader)
            .add(middleware: idempotency.forAccountOperations)
            .post("v1/credits/holds/:hold/capture", use: capture)
            .post("v1/credits/holds/:hold/release", use: release)
        return routes
    }

    // MARK: - API keys

    @Sendable func createKey(_ request: Request, context: TallyRequestContext) async throws -> EditedResponse<CreatedAPIKey> {
        let user = try context.requireUser()
        var request = request
        let body = try await request.decode(CreateKeyBody.self, context: context)
        return EditedResponse(status: .created, response: try await keys.create(name: body.name, teamID: body.team_id, creditLimit: body.credit_limit, by: user, context: context.queries))
    }

    @Sendable func listKeys(_ request: Request, context: TallyRequestContext) async throws -> KeyList {
        KeyList(api_keys: try await keys.list(for: try context.requireUser(), context: context.queries))
    }

    @Sendable func revokeKey(_ request: Request, context: TallyRequestContext) async throws -> HTTPResponse.Status {
        try await keys.revoke(try context.parameters.uuid("key"), by: try context.requireUser(), context: context.queries)
        return .noContent
    }

    // MARK: - Grants (admins and service keys with grants:write)

    @Sendable func grant(_ request: Request, context: TallyRequestContext) async throws -> EditedResponse<CreditGrant> {
        var request = request
        let body = try await request.decode(GrantBody.self, context: context)
        let owner: AccountOwner
        switch (body.user_id, body.team_id) {
        case (let user?, nil): owner = .user(user)
        case (nil, let team?): owner = .team(team)
        default: throw CreditsError(.invalidInput, "give exactly one of user_id and team_id")
        }
        let expires = try body.expires_at.map { try TextRules.time($0, field: "expires_at") }
        let grant = try await ledger.grant(
            to: owner, amount: body.amount, priority: body.priority ?? 0, expiresAt: expires, description: body.description,
            by: try context.actor(), context: context.queries)
        return EditedResponse(status: .created, response: grant)
    }

    @Sendable func adminAudit(_ request: Request, context: TallyRequestContext) async throws -> AdminAuditPage {
        let query = request.uri.queryParameters
        return try await AdminAudit.page(
            database: ledger.database, limit: try Self.pageLimit(query, default: 50), cursor: query.get("cursor"), context: context.queries)
    }

    /// `?limit=` of a paged read, `standard` when absent; the range is checked where the page is read.
    static func pageLimit(_ query: Parameters, default standard: Int) throws -> Int {
        guard let text = query.get("limit") else { return standard }
        guard let value = Int(text) else { throw CreditsError(.invalidInput, "limit must be an integer from 1 to \(Ledger.maximumPageSize)") }
        return value
    }

    // MARK: - Reading an account

    @Sendable func balance(_ request: Request, context: TallyRequestContext) async throws -> Balance {
        let owner = try await owner(of: request, context: context)
        return try await ledger.balance(of: owner, liveKey: try context.requireCaller().apiKey?.keyID, context: context.queries)
    }

    @Sendable func transactions(_ request: Request, context: TallyRequestContext) async throws -> LedgerPage {
        let owner = try await owner(of: request, context: context)
        let query = request.uri.queryParameters
        let limit = try Self.pageLimit(query, default: 20)
        let key = try query.get("api_key_id").map { text in
            guard let id = UUID(uuidString: text) else { throw CreditsError(.invalidInput, "api_key_id must be a key's id") }
            return id
        }
        return try await ledger.transactions(
            of: owner, liveKey: try context.requireCaller().apiKey?.keyID, limit: limit, cursor: query.get("cursor"), key: key,
            kind: query.get("kind"), context: context.queries)
    }

    struct BurnDownAnswer: ResponseEncodable {
        var burndown: BurnDown
        var spend_by_key: KeySpend
    }

    /// The balance over the last 30 days, the spend rate and the day the credits run out, and the spend per key
    /// (named: the keys the caller may list; a key sees only its own name).
    @Sendable func burnDown(_ request: Request, context: TallyRequestContext) async throws -> BurnDownAnswer {
        let owner = try await owner(of: request, context: context)
        let caller = try context.requireCaller()
        let burnDown = try await ledger.burnDown(of: owner, liveKey: caller.apiKey?.keyID, context: context.queries)
        let visible: Set<UUID> = switch caller.kind {
        case .apiKey(let key): [key.keyID]
        case .user(let user): Set(try await keys.list(for: user, context: context.queries).map(\.id))
        case .service: []
        }
        return BurnDownAnswer(burndown: burnDown, spend_by_key: try await ledger.spendByKey(of: owner, visible: visible, context: context.queries))
    }

    /// The account a request reads: the API key's, or with a session the user's own or (`?team_id=`) a team's
    /// the user belongs to.
    func owner(of request: Request, context: TallyRequestContext) async throws -> AccountOwner {
        let team = request.uri.queryParameters.get("team_id")
        switch try context.requireCaller().kind {
        case .apiKey(let key):
            if team != nil {
                throw CreditsError(.invalidInput, "team_id is for sessions: an API key reads only the account it spends from; drop team_id")
            }
            return key.teamID.map { .team($0) } ?? .user(key.userID)
        case .user(let user):
            guard let team else { return .user(user.id) }
            guard let id = UUID(uuidString: team) else { throw CreditsError(.invalidInput, "team_id must be a team id") }
            _ = try await teams.role(of: user, in: id, context: context.queries)
            return .team(id)
        case .service:
            // Not let in by the route's authenticator: service keys read through /v1/customers.
            throw CreditsError(.unauthenticated, Credential.either.missing)
        }
    }

    // MARK: - Spending (API keys)

    @Sendable func consume(_ request: Request, context: TallyRequestContext) async throws -> ConsumeResult {
        // The key may come from the authenticator's cache: the spend itself refuses a revoked key.
        let key = try context.requireAPIKey()
        var request = request
        let body = try await request.decode(ConsumeBody.self, context: context)
        let metadata = body.metadata.flatMap { $0 == .null ? nil : $0 }
        do {
            let result = try await ledger.consume(
                ConsumeRequest(apiKey: key, amount: body.amount, description: body.description, metadata: metadata), context: context.queries)
            Self.countConsume("accepted")
            return result
        } catch let error as CreditsError {
            Self.countConsume(error.code == .insufficientCredits || error.code == .keyLimitExceeded ? error.code.rawValue : "refused")
            throw error
        }
    }

    @Sendable func hold(_ request: Request, context: TallyRequestContext) async throws -> EditedResponse<HoldResult> {
        let key = try context.requireAPIKey()
        var request = request
        let body = try await request.decode(HoldBody.self, context: context)
        let hold = try await ledger.reserve(key, amount: body.amount, ttl: body.ttl_seconds ?? Self.defaultHoldTTL, description: body.description, context: context.queries)
        return EditedResponse(status: .created, response: hold)
    }

    @Sendable func capture(_ request: Request, context: TallyRequestContext) async throws -> HoldResult {
        let hold = try context.parameters.uuid("hold")
        let key = try await settlingKey(hold, context: context)
        var request = request
        let body = try await request.decode(CaptureBody.self, context: context)
        return try await ledger.capture(hold, amount: body.amount, by: key, context: context.queries)
    }

    @Sendable func release(_ request: Request, context: TallyRequestContext) async throws -> HoldResult {
        let hold = try context.parameters.uuid("hold")
        return try await ledger.release(hold, by: try await settlingKey(hold, context: context), context: context.queries)
    }

    /// Who settles a hold: the API key that placed it, or a session of the account's owner (a team's owners
    /// and admins), acting as that key.
    func settlingKey(_ hold: UUID, context: TallyRequestContext) async throws -> APIKeyPrincipal {
        switch try context.requireCaller().kind {
        case .apiKey(let key): return key
        case .user(let user): return try await ledger.placingKey(of: hold, for: user, context: context.queries)
        case .service: throw CreditsError(.unauthenticated, Credential.either.missing)
        }
    }

    // MARK: - Metrics

    /// `tally_consume_total{outcome=…}`: accepted, insufficient-credits, key-limit-exceeded or refused.
    /// Made once (after the metrics system is bootstrapped, on first use), not per request.
    static let consumeCounters: [String: Counter] = Dictionary(uniqueKeysWithValues: ["accepted", "insufficient-credits", "key-limit-exceeded", "refused"].map {
        ($0, Counter(label: "tally_consume_total", dimensions: [("outcome", $0)]))
    })

    static func countConsume(_ outcome: String) {
        consumeCounters[outcome]?.increment()
    }
}

extension CreatedAPIKey: ResponseEncodable {}
extension CreditGrant: ResponseEncodable {}
extension Balance: ResponseEncodable {}
extension ConsumeResult: ResponseEncodable {}
extension HoldResult: ResponseEncodable {}
extension LedgerPage: ResponseEncodable {}
extension AdminAuditPage: ResponseEncodable {}
