import Foundation
import Hummingbird
import TallyCredits

/// `/v1/service-keys`: admins make, list and revoke the product backend's keys.
public struct ServiceKeysController: Sendable {
    let serviceKeys: ServiceKeys
    let authenticators: Authenticators
    let idempotency: IdempotencyMiddleware

    struct CreateBody: JSONBody {
        enum CodingKeys: String, CodingKey, CaseIterable { case name, scopes }
        var name: String
        var scopes: [String]
    }
    struct ServiceKeyList: ResponseEncodable { var service_keys: [ServiceKey] }

    public var endpoints: RouteCollection<TallyRequestContext> {
        let routes = RouteCollection(context: TallyRequestContext.self)
        routes.group()
            .add(middleware: authenticators.session)
            .add(middleware: authenticators.admin)
            .add(middleware: idempotency)
            .post("v1/service-keys", use: create)
            .get("v1/service-keys", use: list)
            .delete("v1/service-keys/:key", use: revoke)
        return routes
    }

    @Sendable func create(_ request: Request, context: TallyRequestContext) async throws -> EditedResponse<CreatedServiceKey> {
        var request = request
        let body = try await request.decode(CreateBody.self, context: context)
        let created = try await serviceKeys.create(name: body.name, scopes: body.scopes, by: try context.actor(), context: context.queries)
        return EditedResponse(status: .created, response: created)
    }

    @Sendable func list(_ request: Request, context: TallyRequestContext) async throws -> ServiceKeyList {
        ServiceKeyList(service_keys: try await serviceKeys.list(context: context.queries))
    }

    @Sendable func revoke(_ request: Request, context: TallyRequestContext) async throws -> HTTPResponse.Status {
        try await serviceKeys.revoke(try context.parameters.uuid("key"), by: try context.actor(), context: context.queries)
        return .noContent
    }
}

extension CreatedServiceKey: ResponseEncodable {}
