import Foundation
import Hummingbird
import Metrics
import TallyCredits

/// API keys, grants, balance and consume.
public struct CreditsController: Sendable {
    public let auth: Auth
    public let keys: APIKeys
    public let ledger: Ledger
    public let teams: Teams

    public init(auth: Auth, keys: APIKeys, ledger: Ledger, teams: Teams) {
        self.auth = auth
        self.keys = keys
        self.ledger = ledger
        self.teams = teams
    }

    struct CreateKeyBody: Decodable {
        var name: String
        var team_id: UUID?
        var credit_limit: Int64?
    }
    struct KeyList: ResponseEncodable { var api_keys: [APIKey] }
    struct GrantBody: Decodable {
        var user_id: UUID?
        var team_id: UUID?
        var amount: Int64
        var expires_at: String?
        var priority: Int?
        var description: String
    }
    struct ConsumeBody: Decodable {
        var amount: Int64
        var description: String?
    }
    struct HoldBody: Decodable {
        var amount: Int64
        var ttl_seconds: Int?
        var description: String?
    }
    struct CaptureBody: Decodable {
        var amount: Int64?
    }

    /// How long a hold lasts when the request does not say.
    public static let defaultHoldTTL = 900

    public var endpoints: RouteCollection<TallyRequestContext> {
        let routes = RouteCollection(context: TallyRequestContext.self)
        routes.post("v1/api-keys") { request, context -> EditedResponse<CreatedAPIKey> in
            let user = try await auth.user(from: request)
            var request = request
            let body = try await request.decodeStrict(CreateKeyBody.self, context: context)
            return EditedResponse(status: .created, response: try await keys.create(name: body.name, teamID: body.team_id, creditLimit: body.credit_limit, by: user))
        }
        routes.get("v1/api-keys") { request, _ -> KeyList in
            KeyList(api_keys: try await keys.list(for: try await auth.user(from: request)))
        }
        routes.delete("v1/api-keys/:key") { request, context -> HTTPResponse.Status in
            try await keys.revoke(try context.parameters.uuid("key"), by: try await auth.user(from: request))
            return .noContent
        }
        routes.post("v1/admin/grants") { request, context -> EditedResponse<CreditGrant> in
            let user = try await auth.user(from: request)
            guard user.isAdmin else { throw CreditsError(.forbidden, "only admins grant credits") }
            var request = request
            let body = try await request.decodeStrict(GrantBody.self, context: context)
            let owner: AccountOwner
            switch (body.user_id, body.team_id) {
            case (let user?, nil): owner = .user(user)
            case (nil, let team?): owner = .team(team)
            default: throw CreditsError(.invalidInput, "give exactly one of user_id and team_id")
            }
            let expires = try body.expires_at.map { try TextRules.time($0, field: "expires_at") }
            let grant = try await ledger.grant(to: owner, amount: body.amount, priority: body.priority ?? 0, expiresAt: expires, description: body.description)
            return EditedResponse(status: .created, response: grant)
        }
        routes.get("v1/credits/balance") { request, _ -> Balance in
            try await ledger.balance(of: try await owner(of: request))
        }
        routes.post("v1/credits/consume") { request, context -> ConsumeResult in
            // The spend itself checks the key is live, so a recently seen key skips the lookup.
            let token = try apiKeyToken(of: request)
            let key = try await keys.principal(for: token)
            var request = request
            let (body, raw) = try await request.decodeStrictWithObject(ConsumeBody.self, context: context)
            var metadata: String?
            if let value = raw["metadata"], !(value is NSNull) {
                guard value is [String: Any], let data = try? JSONSerialization.data(withJSONObject: value) else {
                    throw CreditsError(.invalidInput, "metadata must be a JSON object")
                }
                metadata = String(decoding: data, as: UTF8.self)
            }
            do {
                let result = try await ledger.consume(ConsumeRequest(apiKey: key, amount: body.amount, description: body.description, metadataJSON: metadata))
                Self.countConsume("accepted")
                return result
            } catch let error as CreditsError {
                if error.code == .unauthenticated { keys.forget(token) }
                Self.countConsume(error.code == .insufficientCredits || error.code == .keyLimitExceeded ? error.code.rawValue : "refused")
                throw error
            }
        }
        routes.post("v1/credits/holds") { request, context -> EditedResponse<HoldResult> in
            let key = try await apiKey(of: request)
            var request = request
            let body = try await request.decodeStrict(HoldBody.self, context: context)
            let hold = try await ledger.reserve(key, amount: body.amount, ttl: body.ttl_seconds ?? Self.defaultHoldTTL, description: body.description)
            return EditedResponse(status: .created, response: hold)
        }
        routes.post("v1/credits/holds/:hold/capture") { request, context -> HoldResult in
            let key = try await apiKey(of: request)
            let hold = try context.parameters.uuid("hold")
            var request = request
            let body = try await request.decodeStrict(CaptureBody.self, context: context)
            return try await ledger.capture(hold, amount: body.amount, by: key)
        }
        routes.post("v1/credits/holds/:hold/release") { request, context -> HoldResult in
            let key = try await apiKey(of: request)
            return try await ledger.release(try context.parameters.uuid("hold"), by: key)
        }
        routes.get("v1/credits/transactions") { request, _ -> LedgerPage in
            let owner = try await owner(of: request)
            let query = request.uri.queryParameters
            var limit = 20
            if let text = query.get("limit") {
                guard let value = Int(text) else { throw CreditsError(.invalidInput, "limit must be an integer from 1 to \(Ledger.maximumPageSize)") }
                limit = value
            }
            return try await ledger.transactions(of: owner, limit: limit, cursor: query.get("cursor"))
        }
        return routes
    }

    /// `tally_consume_total{outcome=…}`: accepted, insufficient-credits, key-limit-exceeded or refused.
    /// Made once (after the metrics system is bootstrapped, on first use), not per request.
    static let consumeCounters: [String: Counter] = Dictionary(uniqueKeysWithValues: ["accepted", "insufficient-credits", "key-limit-exceeded", "refused"].map {
        ($0, Counter(label: "tally_consume_total", dimensions: [("outcome", $0)]))
    })

    static func countConsume(_ outcome: String) {
        consumeCounters[outcome]?.increment()
    }

    /// The account a request reads: the API key's, or with a session the user's own or (`?team_id=`) a team's
    /// the user belongs to.
    func owner(of request: Request) async throws -> AccountOwner {
        if let token = request.bearerToken, !token.hasPrefix(Auth.sessionTokenPrefix) {
            let key = try await keys.authenticate(token)
            if request.uri.queryParameters.get("team_id") != nil {
                throw CreditsError(.invalidInput, "team_id is for sessions: an API key reads only the account it spends from; drop team_id")
            }
            return key.teamID.map { .team($0) } ?? .user(key.userID)
        }
        let user = try await auth.user(from: request)
        if let text = request.uri.queryParameters.get("team_id") {
            guard let team = UUID(uuidString: text) else { throw CreditsError(.invalidInput, "team_id must be a team id") }
            _ = try await teams.role(of: user, in: team)
            return .team(team)
        }
        return .user(user.id)
    }

    func apiKey(of request: Request) async throws -> APIKeyPrincipal {
        try await keys.authenticate(try apiKeyToken(of: request))
    }

    /// The request's bearer token when it is an API key (not a session token).
    func apiKeyToken(of request: Request) throws -> String {
        guard let token = request.bearerToken, !token.hasPrefix(Auth.sessionTokenPrefix) else {
            throw CreditsError(.unauthenticated, "spending needs an API key: Authorization: Bearer tly_…")
        }
        return token
    }
}

extension CreatedAPIKey: ResponseEncodable {}
extension CreditGrant: ResponseEncodable {}
extension Balance: ResponseEncodable {}
extension ConsumeResult: ResponseEncodable {}
extension HoldResult: ResponseEncodable {}
extension LedgerPage: ResponseEncodable {}
