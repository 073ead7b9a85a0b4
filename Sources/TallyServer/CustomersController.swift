import Foundation
import Hummingbird
import TallyCredits

/// `/v1/customers/{external_id}`: the product's backend, with a service key, addresses accounts by its own ids
/// for users and teams. Each route group needs one scope (`ServiceScope`).
public struct CustomersController: Sendable {
    let customers: Customers
    let alerts: BalanceAlerts
    let keys: APIKeys
    let ledger: Ledger
    let authenticators: Authenticators
    let idempotency: IdempotencyMiddleware

    struct PutBody: JSONBody {
        enum CodingKeys: String, CodingKey, CaseIterable { case kind, email, name, owner }
        var kind: String?
        var email: String?
        var name: String?
        var owner: String?
    }
    struct GrantBody: JSONBody {
        enum CodingKeys: String, CodingKey, CaseIterable { case amount, expires_at, priority, description }
        var amount: Int64
        var expires_at: String?
        var priority: Int?
        var description: String
    }
    struct KeyBody: JSONBody {
        enum CodingKeys: String, CodingKey, CaseIterable { case name, credit_limit }
        var name: String
        var credit_limit: Int64?
    }
    struct AlertBody: JSONBody {
        enum CodingKeys: String, CodingKey, CaseIterable { case threshold, percent }
        var threshold: Int64?
        var percent: Int?
    }
    struct AlertResponse: ResponseEncodable { var alert: BalanceAlert }
    struct AlertList: ResponseEncodable { var alerts: [BalanceAlert] }
    struct CustomerResponse: ResponseEncodable { var customer: Customer }
    struct KeyList: ResponseEncodable { var api_keys: [APIKey] }

    public var endpoints: RouteCollection<TallyRequestContext> {
        let routes = RouteCollection(context: TallyRequestContext.self)
        // Create-or-get is idempotent by itself: no Idempotency-Key needed.
        routes.group()
            .add(middleware: authenticators.service)
            .add(middleware: authenticators.scope(.accountsWrite))
            .put("v1/customers/:customer", use: put)
        routes.group()
            .add(middleware: authenticators.service)
            .add(middleware: authenticators.scope(.accountsWrite))
            .add(middleware: idempotency)
            .post("v1/customers/:customer/alerts", use: createAlert)
            .delete("v1/customers/:customer/alerts/:alert", use: deleteAlert)
        routes.group()
            .add(middleware: authenticators.service)
            .add(middleware: authenticators.scope(.accountsRead))
            .get("v1/customers/:customer", use: get)
            .get("v1/customers/:customer/balance", use: balance)
            .get("v1/customers/:customer/transactions", use: transactions)
            .get("v1/customers/:customer/api-keys", use: listKeys)
            .get("v1/customers/:customer/alerts", use: listAlerts)
        routes.group()
            .add(middleware: authenticators.service)
            .add(middleware: authenticators.scope(.grantsWrite))
            .add(middleware: idempotency)
            .post("v1/customers/:customer/grants", use: grant)
        routes.group()
            .add(middleware: authenticators.service)
            .add(middleware: authenticators.scope(.keysWrite))
            .add(middleware: idempotency)
            .post("v1/customers/:customer/api-keys", use: createKey)
            .delete("v1/customers/:customer/api-keys/:key", use: revokeKey)
        return routes
    }

    /// The customer the path names; 404 when there is none.
    func customer(_ context: TallyRequestContext) async throws -> Customer {
        try await customers.find(try context.parameters.externalID("customer"), context: context.queries)
    }

    @Sendable func put(_ request: Request, context: TallyRequestContext) async throws -> EditedResponse<CustomerResponse> {
        let externalID = try context.parameters.externalID("customer")
        var request = request
        let body = try await request.decode(PutBody.self, context: context)
        guard let kind = Customer.Kind(rawValue: body.kind ?? "user") else {
            throw CreditsError(.invalidInput, "kind must be user or team")
        }
        let (customer, created) = try await customers.createOrGet(
            externalID, CustomerRequest(kind: kind, email: body.email, name: body.name, owner: body.owner), by: try context.actor(),
            context: context.queries)
        return EditedResponse(status: created ? .created : .ok, response: CustomerResponse(customer: customer))
    }

    @Sendable func get(_ request: Request, context: TallyRequestContext) async throws -> CustomerResponse {
        CustomerResponse(customer: try await customer(context))
    }

    @Sendable func balance(_ request: Request, context: TallyRequestContext) async throws -> Balance {
        try await ledger.balance(of: try await customer(context).accountOwner, liveKey: nil, context: context.queries)
    }

    @Sendable func transactions(_ request: Request, context: TallyRequestContext) async throws -> LedgerPage {
        let owner = try await customer(context).accountOwner
        let query = request.uri.queryParameters
        return try await ledger.transactions(
            of: owner, liveKey: nil, limit: try CreditsController.pageLimit(query, default: 20), cursor: query.get("cursor"), context: context.queries)
    }

    @Sendable func grant(_ request: Request, context: TallyRequestContext) async throws -> EditedResponse<CreditGrant> {
        var request = request
        let body = try await request.decode(GrantBody.self, context: context)
        let owner = try await customer(context).accountOwner
        let expires = try body.expires_at.map { try TextRules.time($0, field: "expires_at") }
        let grant = try await ledger.grant(
            to: owner, amount: body.amount, priority: body.priority ?? 0, expiresAt: expires, description: body.description,
            by: try context.actor(), context: context.queries)
        return EditedResponse(status: .created, response: grant)
    }

    @Sendable func createAlert(_ request: Request, context: TallyRequestContext) async throws -> EditedResponse<AlertResponse> {
        var request = request
        let body = try await request.decode(AlertBody.self, context: context)
        let owner = try await customer(context).accountOwner
        let alert = try await alerts.create(on: owner, threshold: body.threshold, percent: body.percent, by: try context.actor(), context: context.queries)
        return EditedResponse(status: .created, response: AlertResponse(alert: alert))
    }

    @Sendable func listAlerts(_ request: Request, context: TallyRequestContext) async throws -> AlertList {
        AlertList(alerts: try await alerts.list(on: try await customer(context).accountOwner, context: context.queries))
    }

    @Sendable func deleteAlert(_ request: Request, context: TallyRequestContext) async throws -> HTTPResponse.Status {
        let owner = try await customer(context).accountOwner
        try await alerts.delete(try context.parameters.uuid("alert"), on: owner, by: try context.actor(), context: context.queries)
        return .noContent
    }

    @Sendable func listKeys(_ request: Request, context: TallyRequestContext) async throws -> KeyList {
        KeyList(api_keys: try await keys.list(spendingFrom: try await customer(context).accountOwner, context: context.queries))
    }

    /// A key that spends from the customer's account and acts for the user (or the team's first owner).
    @Sendable func createKey(_ request: Request, context: TallyRequestContext) async throws -> EditedResponse<CreatedAPIKey> {
        var request = request
        let body = try await request.decode(KeyBody.self, context: context)
        let customer = try await customer(context)
        let holder = try await customers.keyHolder(of: customer, context: context.queries)
        let teamID: UUID? = customer.kind == .team ? customer.id : nil
        let created = try await keys.create(name: body.name, teamID: teamID, creditLimit: body.credit_limit, by: holder, context: context.queries)
        return EditedResponse(status: .created, response: created)
    }

    @Sendable func revokeKey(_ request: Request, context: TallyRequestContext) async throws -> HTTPResponse.Status {
        let owner = try await customer(context).accountOwner
        try await keys.revoke(try context.parameters.uuid("key"), spendingFrom: owner, by: try context.actor(), context: context.queries)
        return .noContent
    }
}

extension Parameters {
    /// A path parameter that is the product's id for a customer, percent-decoded (`auth0%7C63f1` is `auth0|63f1`);
    /// 404 when it is not one (as for an id that names nobody).
    func externalID(_ name: String) throws -> String {
        let raw = self.get(name) ?? ""
        let text = raw.removingPercentEncoding ?? raw
        do {
            return try TextRules.checkExternalID(text)
        } catch let error as CreditsError {
            throw CreditsError(.notFound, error.message)
        }
    }
}
