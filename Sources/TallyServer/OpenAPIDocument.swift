import Foundation
import Hummingbird
import TallyCredits

/// `GET /openapi.json`: the OpenAPI 3.1 description of every route, its request body and its answers.
/// Tests hold the code to it: every route is documented and every documented route is routed; each body's
/// fields are what its handler accepts; and every answer any server test gets (status, content type, body,
/// problem `type`) is checked against it, as schemathesis checks answers to generated requests.
public enum OpenAPIDocument {
    static var endpoints: RouteCollection<TallyRequestContext> {
        let routes = RouteCollection(context: TallyRequestContext.self)
        routes.get("openapi.json") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "application/json", .cacheControl: "public, max-age=300"],
                body: .init(byteBuffer: ByteBuffer(bytes: json)))
        }
        return routes
    }

    /// The document, serialised once.
    public static let json: [UInt8] = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Strings, numbers, arrays and objects: encoding cannot fail.
        return [UInt8]((try? encoder.encode(document)) ?? Data("{}".utf8))
    }()

    // MARK: - Building blocks

    static func ref(_ name: String) -> JSONValue { ["$ref": JSONValue("#/components/schemas/\(name)")] }

    static func object(_ properties: [String: JSONValue], required: [String] = []) -> JSONValue {
        ["type": "object", "additionalProperties": false, "properties": .object(properties), "required": .array(required.map { JSONValue($0) })]
    }

    /// A request body: as `object`, with every optional field also taking `null` (the same as leaving it out).
    static func body(_ properties: [String: JSONValue], required: [String] = []) -> JSONValue {
        object(properties.reduce(into: [:]) { result, field in
            result[field.key] = required.contains(field.key) ? field.value : optional(field.value)
        }, required: required)
    }

    /// Strings the server stores: PostgreSQL's text cannot hold U+0000, so the server refuses it (400).
    static let withoutNUL = JSONValue(TextRules.withoutNUL)
    static var id: JSONValue { ["type": "string", "format": "uuid"] }
    static var time: JSONValue { ["type": "string", "format": "date-time"] }
    static var text: JSONValue { ["type": "string", "pattern": withoutNUL] }
    /// A ledger entry's description.
    static var entryDescription: JSONValue { ["type": "string", "pattern": withoutNUL, "maxLength": JSONValue(TextRules.descriptionMaximum)] }
    static var email: JSONValue {
        ["type": "string", "maxLength": JSONValue(TextRules.emailMaximum), "pattern": JSONValue(TextRules.email), "description": "name@example.com: one @, a dot inside the domain, no spaces"]
    }
    static var password: JSONValue {
        ["type": "string", "minLength": JSONValue(TextRules.passwordMinimum), "maxLength": JSONValue(TextRules.passwordMaximum), "pattern": withoutNUL]
    }
    static var name: JSONValue {
        ["type": "string", "minLength": 1, "maxLength": JSONValue(TextRules.nameMaximum), "pattern": JSONValue(TextRules.notBlank), "description": "Not all spaces; kept without surrounding spaces"]
    }
    /// An optional field: `null` is the same as leaving it out.
    static func optional(_ schema: JSONValue) -> JSONValue {
        guard let type = schema["type"]?.stringValue else { return ["anyOf": [schema, ["type": "null"]]] }
        var schema = schema
        schema["type"] = [JSONValue(type), "null"]
        return schema
    }
    static var credits: JSONValue { ["type": "integer", "format": "int64"] }
    static var positiveCredits: JSONValue { ["type": "integer", "format": "int64", "minimum": 1] }
    /// A grant's priority: a 32-bit integer, as `credit_grants.priority` stores it.
    static var priority: JSONValue { ["type": "integer", "format": "int32", "minimum": JSONValue(Int(Int32.min)), "maximum": JSONValue(Int(Int32.max))] }
    static func nullable(_ type: String, format: String? = nil) -> JSONValue {
        var schema: JSONValue = ["type": [JSONValue(type), "null"]]
        if let format { schema["format"] = JSONValue(format) }
        return schema
    }

    static func json(_ schema: JSONValue) -> JSONValue { ["application/json": ["schema": schema]] }

    static func answer(_ description: String, _ schema: JSONValue? = nil) -> JSONValue {
        var response: JSONValue = ["description": JSONValue(description)]
        if let schema { response["content"] = json(schema) }
        return response
    }

    /// A problem answer, with the `type`s it can have (without `/problems/`): clients can match on them, and the
    /// contract test fails on a problem the document does not list.
    static func problem(_ description: String, _ types: [String]) -> JSONValue {
        [
            "description": JSONValue(description),
            "content": ["application/problem+json": ["schema": ["allOf": [ref("Problem"), ["properties": ["type": ["enum": .array(types.map { JSONValue("/problems/" + $0) })]]]]]]],
        ]
    }

    enum Security { case none, session, apiKey, either, service, adminOrService }

    static func operation(
        _ summary: String, security: Security, scope: ServiceScope? = nil, body: JSONValue? = nil, parameters: [JSONValue] = [],
        idempotent: Bool = false, responses: [String: JSONValue]
    ) -> JSONValue {
        var op: JSONValue = ["summary": JSONValue(summary)]
        // The scope a service key needs here (`ScopeMiddleware`), for clients and for the scope matrix test.
        if let scope { op["x-tally-scope"] = JSONValue(scope.rawValue) }
        var responses = responses
        switch security {
        case .none: op["security"] = []
        case .session: op["security"] = [["session": []]]
        case .apiKey: op["security"] = [["apiKey": []]]
        case .either: op["security"] = [["session": []], ["apiKey": []]]
        case .service: op["security"] = [["serviceKey": []]]
        case .adminOrService: op["security"] = [["session": []], ["serviceKey": []]]
        }
        if security != .none {
            responses["401"] = problem("No credential, an unknown, expired or revoked one, or the wrong kind for this route", ["unauthenticated"])
        }
        if responses["503"] == nil {
            responses["503"] = unavailable()
        }
        if let body {
            op["requestBody"] = ["required": true, "content": json(body)]
            responses["400"] = problem(
                "Invalid JSON, an unknown field, a missing field, a wrong type, a NUL character in a string, or a value the field does not take",
                ["invalid-json", "unknown-field", "missing-field", "wrong-type", "invalid-input"])
            responses["408"] = problem("The body did not arrive within --request-timeout; the connection is closed", ["request-timeout"])
            responses["413"] = problem("The body is over 1 MiB", ["body-too-large"])
        }
        var parameters = parameters
        if idempotent {
            parameters.append([
                "name": "Idempotency-Key", "in": "header", "required": false,
                "description": "Retry-safe key (1 to 255 visible ASCII characters, kept 24 hours): the same key and body answer with the first response and `Idempotent-Replayed: true`; another body, or a retry while the first request runs, is 409.",
                "schema": ["type": "string", "pattern": "^[!-~]{1,255}$"],
            ])
            if responses["409"] == nil {
                responses["409"] = problem(
                    "The Idempotency-Key was used with another request, or its first request is still running",
                    ["idempotency-key-reused", "idempotency-request-in-progress"])
            }
            if responses["400"] == nil { responses["400"] = problem("A malformed Idempotency-Key", ["invalid-input"]) }
        }
        if !parameters.isEmpty { op["parameters"] = .array(parameters) }
        op["responses"] = .object(responses)
        return op
    }

    /// A 503 with `Retry-After`: the database gave no connection, or the request ran out of time (`extra`: more
    /// reasons an operation has).
    static func unavailable(_ extra: (description: String, types: [String])? = nil) -> JSONValue {
        var answer = problem(
            "The database gave no connection within --database-wait, its connection broke, the request outlived --request-timeout, or (with --trust-jwt) the product's keys could not be had"
                + (extra.map { "; or " + $0.description } ?? "")
                + "; `Retry-After` says when to retry, and `detail` whether the request may have taken effect",
            ["database-unavailable", "request-timeout", "product-keys-unavailable"] + (extra?.types ?? []))
        answer["headers"] = retryAfter
        return answer
    }

    /// A 429 with `Retry-After`.
    static func tooManyAttempts(_ description: String) -> JSONValue {
        var answer = problem(description, ["too-many-attempts"])
        answer["headers"] = retryAfter
        return answer
    }

    static var retryAfter: JSONValue {
        ["Retry-After": ["description": "Seconds to wait before retrying", "schema": ["type": "integer", "minimum": 0]]]
    }

    static func pathParameter(_ name: String, _ description: String) -> JSONValue {
        ["name": JSONValue(name), "in": "path", "required": true, "description": JSONValue(description), "schema": id]
    }

    static func queryParameter(_ name: String, _ description: String, _ schema: JSONValue) -> JSONValue {
        ["name": JSONValue(name), "in": "query", "required": false, "description": JSONValue(description), "schema": schema]
    }

    /// `limit` and `cursor` of a newest-first page of a log paged by id (`Ledger.pageStart`).
    static func pageParameters(defaultLimit: Int) -> [JSONValue] {
        [
            queryParameter("limit", "Entries per page", [
                "type": "integer", "minimum": 1, "maximum": .integer(Int64(Ledger.maximumPageSize)), "default": .integer(Int64(defaultLimit)),
            ]),
            queryParameter("cursor", "A previous page's next_cursor: the id of its last entry; the page holds older entries", [
                "type": "string", "pattern": JSONValue(Ledger.cursorPattern),
            ]),
        ]
    }

    static var teamQuery: JSONValue { queryParameter("team_id", "Read a team's account (you must be a member) instead of your own", id) }

    // MARK: - The document

    static var document: JSONValue {
        [
            "openapi": "3.1.0",
            "info": [
                "title": "Tally",
                "version": "1",
                "description": "Credits and API keys for API products. Amounts are integer credits. Errors are application/problem+json (RFC 9457) with a stable `type`.",
            ],
            "components": ["securitySchemes": securitySchemes, "schemas": schemas],
            "paths": paths,
        ]
    }

    static var securitySchemes: JSONValue {
        [
        "session": ["type": "http", "scheme": "bearer", "description": "A session token (tly_sess_…) from signup or login"],
        "apiKey": ["type": "http", "scheme": "bearer", "description": "An API key (tly_…) from POST /v1/api-keys"],
        "serviceKey": [
            "type": "http", "scheme": "bearer",
            "description": "A service key (tly_svc_…) for the product's backend, from POST /v1/service-keys or `tally keys create --service`; each route needs one scope (grants:write, accounts:read, accounts:write, keys:write, webhooks:write; accounts:write includes accounts:read), and a key without it gets 403",
        ],
        ]
    }
}
