import Foundation
import Hummingbird
import TallyCredits

/// `/v1/webhooks`: endpoints (global, or one customer's), their secrets, deliveries and redelivery. For
/// admins and service keys with `webhooks:write`.
public struct WebhooksController: Sendable {
    let webhooks: Webhooks
    let customers: Customers
    let guardrail: WebhookAddressGuard
    let authenticators: Authenticators
    let idempotency: IdempotencyMiddleware

    struct CreateBody: JSONBody {
        enum CodingKeys: String, CodingKey, CaseIterable { case url, event_types, customer, description }
        var url: String
        var event_types: [String]?
        var customer: String?
        var description: String?
    }
    struct EndpointList: ResponseEncodable { var webhooks: [WebhookEndpoint] }
    struct EndpointResponse: ResponseEncodable { var webhook: WebhookEndpoint }
    struct Accepted: ResponseEncodable { var detail: String }

    public var endpoints: RouteCollection<TallyRequestContext> {
        let routes = RouteCollection(context: TallyRequestContext.self)
        routes.group()
            .add(middleware: authenticators.adminOrService)
            .add(middleware: authenticators.adminOr(.webhooksWrite))
            .add(middleware: idempotency)
            .post("v1/webhooks", use: create)
            .get("v1/webhooks", use: list)
            .delete("v1/webhooks/:webhook", use: delete)
            .post("v1/webhooks/:webhook/rotate-secret", use: rotate)
            .post("v1/webhooks/:webhook/enable", use: enable)
            .get("v1/webhooks/:webhook/deliveries", use: deliveries)
            .post("v1/webhooks/:webhook/deliveries/:delivery/redeliver", use: redeliver)
        return routes
    }

    @Sendable func create(_ request: Request, context: TallyRequestContext) async throws -> EditedResponse<WebhookEndpointWithSecret> {
        var request = request
        let body = try await request.decode(CreateBody.self, context: context)
        _ = try WebhookEventType.parse(body.event_types)
        try await guardrail.check(body.url)
        var owner: AccountOwner?
        if let customer = body.customer { owner = try await customers.find(customer, context: context.queries).accountOwner }
        let created = try await webhooks.create(
            url: body.url, account: owner, eventTypes: body.event_types, description: body.description, by: try context.actor(),
            context: context.queries)
        return EditedResponse(status: .created, response: created)
    }

    @Sendable func list(_ request: Request, context: TallyRequestContext) async throws -> EndpointList {
        EndpointList(webhooks: try await webhooks.list(context: context.queries))
    }

    @Sendable func delete(_ request: Request, context: TallyRequestContext) async throws -> HTTPResponse.Status {
        try await webhooks.delete(try context.parameters.uuid("webhook"), by: try context.actor(), context: context.queries)
        return .noContent
    }

    @Sendable func rotate(_ request: Request, context: TallyRequestContext) async throws -> WebhookEndpointWithSecret {
        try await webhooks.rotateSecret(try context.parameters.uuid("webhook"), by: try context.actor(), context: context.queries)
    }

    @Sendable func enable(_ request: Request, context: TallyRequestContext) async throws -> EndpointResponse {
        EndpointResponse(webhook: try await webhooks.enable(try context.parameters.uuid("webhook"), by: try context.actor(), context: context.queries))
    }

    @Sendable func deliveries(_ request: Request, context: TallyRequestContext) async throws -> WebhookDeliveryPage {
        let query = request.uri.queryParameters
        return try await webhooks.deliveries(
            of: try context.parameters.uuid("webhook"), limit: try CreditsController.pageLimit(query, default: 20), cursor: query.get("cursor"),
            context: context.queries)
    }

    @Sendable func redeliver(_ request: Request, context: TallyRequestContext) async throws -> EditedResponse<Accepted> {
        let endpoint = try context.parameters.uuid("webhook")
        guard let delivery = context.parameters.get("delivery").flatMap(Int64.init) else {
            throw CreditsError(.notFound, "delivery must be a delivery's id (a number); GET /v1/webhooks/{id}/deliveries lists them")
        }
        try await webhooks.redeliver(delivery, of: endpoint, by: try context.actor(), context: context.queries)
        return EditedResponse(status: .accepted, response: Accepted(detail: "delivery \(delivery) is due now, with the same webhook-id"))
    }
}

extension WebhookEndpointWithSecret: ResponseEncodable {}
extension WebhookDeliveryPage: ResponseEncodable {}
