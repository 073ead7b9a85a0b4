import Foundation
import Hummingbird
import TallyCredits

/// A customer's automatic grants, for the product's backend with a service key: top-up rules (and the top-ups
/// they made) and recurring grants, under `/v1/customers/{external_id}/…`. Making or removing either needs
/// `grants:write` (both grant credits); reading them `accounts:read`.
public struct CustomerGrantsController: Sendable {
    let customers: Customers
    let topUps: TopUps
    let recurring: RecurringGrants
    let authenticators: Authenticators
    let idempotency: IdempotencyMiddleware

    struct TopUpRuleBody: JSONBody {
        enum CodingKeys: String, CodingKey, CaseIterable { case below, amount, top_up_to, action, max_per_day, expires_in_seconds, description }
        var below: Int64
        var amount: Int64?
        var top_up_to: Int64?
        var action: String?
        var max_per_day: Int?
        var expires_in_seconds: Int64?
        var description: String?
    }
    struct RecurringGrantBody: JSONBody {
        enum CodingKeys: String, CodingKey, CaseIterable { case amount, every, anchor, expires_in_seconds, rollover_max, rollover_min, priority, description }
        var amount: Int64
        var every: String
        var anchor: String?
        var expires_in_seconds: Int64?
        var rollover_max: Int64?
        var rollover_min: Int64?
        var priority: Int?
        var description: String
    }
    struct RuleResponse: ResponseEncodable { var topup_rule: TopUpRule }
    struct RuleList: ResponseEncodable { var topup_rules: [TopUpRule] }
    struct TopUpList: ResponseEncodable { var topups: [TopUp] }
    struct ScheduleResponse: ResponseEncodable { var recurring_grant: RecurringGrant }
    struct ScheduleList: ResponseEncodable { var recurring_grants: [RecurringGrant] }

    public var endpoints: RouteCollection<TallyRequestContext> {
        let routes = RouteCollection(context: TallyRequestContext.self)
        routes.group()
            .add(middleware: authenticators.service)
            .add(middleware: authenticators.scope(.grantsWrite))
            .add(middleware: idempotency)
            .post("v1/customers/:customer/topup-rules", use: createRule)
            .delete("v1/customers/:customer/topup-rules/:rule", use: deleteRule)
            .post("v1/customers/:customer/recurring-grants", use: createSchedule)
            .delete("v1/customers/:customer/recurring-grants/:schedule", use: endSchedule)
        routes.group()
            .add(middleware: authenticators.service)
            .add(middleware: authenticators.scope(.accountsRead))
            .get("v1/customers/:customer/topup-rules", use: listRules)
            .get("v1/customers/:customer/topups", use: listTopUps)
            .get("v1/customers/:customer/recurring-grants", use: listSchedules)
        return routes
    }

    func owner(_ context: TallyRequestContext) async throws -> AccountOwner {
        try await customers.find(try context.parameters.externalID("customer"), context: context.queries).accountOwner
    }

    @Sendable func createRule(_ request: Request, context: TallyRequestContext) async throws -> EditedResponse<RuleResponse> {
        var request = request
        let body = try await request.decode(TopUpRuleBody.self, context: context)
        guard let action = TopUpRule.Action(rawValue: body.action ?? TopUpRule.Action.request.rawValue) else {
            throw CreditsError(.invalidInput, "action must be request (topup.requested: you charge, then grant) or grant (granted at once)")
        }
        let rule = try await topUps.create(
            on: try await owner(context),
            TopUpRuleRequest(
                below: body.below, amount: body.amount, topUpTo: body.top_up_to, action: action,
                maxPerDay: body.max_per_day ?? TopUpRuleRequest.defaultMaxPerDay, expiresInSeconds: body.expires_in_seconds,
                description: body.description ?? "automatic top-up"),
            by: try context.actor(), context: context.queries)
        return EditedResponse(status: .created, response: RuleResponse(topup_rule: rule))
    }

    @Sendable func listRules(_ request: Request, context: TallyRequestContext) async throws -> RuleList {
        RuleList(topup_rules: try await topUps.list(on: try await owner(context), context: context.queries))
    }

    @Sendable func deleteRule(_ request: Request, context: TallyRequestContext) async throws -> HTTPResponse.Status {
        let owner = try await owner(context)
        try await topUps.delete(try context.parameters.uuid("rule"), on: owner, by: try context.actor(), context: context.queries)
        return .noContent
    }

    @Sendable func listTopUps(_ request: Request, context: TallyRequestContext) async throws -> TopUpList {
        TopUpList(topups: try await topUps.history(of: try await owner(context), context: context.queries))
    }

    @Sendable func createSchedule(_ request: Request, context: TallyRequestContext) async throws -> EditedResponse<ScheduleResponse> {
        var request = request
        let body = try await request.decode(RecurringGrantBody.self, context: context)
        guard let every = RecurringGrant.Every(rawValue: body.every) else { throw CreditsError(.invalidInput, "every must be day, week or month") }
        let anchor = try body.anchor.map { try TextRules.time($0, field: "anchor") }
        let schedule = try await recurring.create(
            on: try await owner(context),
            RecurringGrantRequest(
                amount: body.amount, every: every, anchor: anchor, expiresInSeconds: body.expires_in_seconds, rolloverMax: body.rollover_max,
                rolloverMin: body.rollover_min ?? 0, priority: body.priority ?? 0, description: body.description),
            by: try context.actor(), context: context.queries)
        return EditedResponse(status: .created, response: ScheduleResponse(recurring_grant: schedule))
    }

    @Sendable func listSchedules(_ request: Request, context: TallyRequestContext) async throws -> ScheduleList {
        ScheduleList(recurring_grants: try await recurring.list(on: try await owner(context), context: context.queries))
    }

    @Sendable func endSchedule(_ request: Request, context: TallyRequestContext) async throws -> HTTPResponse.Status {
        let owner = try await owner(context)
        _ = try await recurring.end(try context.parameters.uuid("schedule"), on: owner, by: try context.actor(), context: context.queries)
        return .noContent
    }
}
