import Foundation
import Hummingbird
import TallyCredits

/// `GET /openapi.json`: the OpenAPI 3.1 description of every route, its request body and its answers.
/// A test checks it against the router's routes and `RequestBodies`, so it cannot drift from the code.
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
        let data = (try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return [UInt8](data)
    }()

    // MARK: - Building blocks

    private static func ref(_ name: String) -> [String: Any] { ["$ref": "#/components/schemas/\(name)"] }

    private static func object(_ properties: [String: [String: Any]], required: [String] = []) -> [String: Any] {
        ["type": "object", "additionalProperties": false, "properties": properties, "required": required]
    }

    /// A request body: as `object`, with every optional field also taking `null` (the same as leaving it out).
    private static func body(_ properties: [String: [String: Any]], required: [String] = []) -> [String: Any] {
        object(properties.mapValues { $0 }.reduce(into: [:]) { result, field in
            result[field.key] = required.contains(field.key) ? field.value : optional(field.value)
        }, required: required)
    }

    /// Strings the server stores: PostgreSQL's text cannot hold U+0000, so the server refuses it (400).
    static let withoutNUL = TextRules.withoutNUL
    private static var id: [String: Any] { ["type": "string", "format": "uuid"] }
    private static var time: [String: Any] { ["type": "string", "format": "date-time"] }
    private static var text: [String: Any] { ["type": "string", "pattern": withoutNUL] }
    private static var email: [String: Any] {
        ["type": "string", "maxLength": TextRules.emailMaximum, "pattern": TextRules.email, "description": "name@example.com: one @, a dot inside the domain, no spaces"]
    }
    private static var password: [String: Any] {
        ["type": "string", "minLength": TextRules.passwordMinimum, "maxLength": TextRules.passwordMaximum, "pattern": withoutNUL]
    }
    private static var name: [String: Any] {
        ["type": "string", "minLength": 1, "maxLength": TextRules.nameMaximum, "pattern": TextRules.notBlank, "description": "Not all spaces; kept without surrounding spaces"]
    }
    /// An optional field: `null` is the same as leaving it out.
    private static func optional(_ schema: [String: Any]) -> [String: Any] {
        guard let type = schema["type"] as? String else { return ["anyOf": [schema, ["type": "null"]]] }
        var schema = schema
        schema["type"] = [type, "null"]
        return schema
    }
    private static var credits: [String: Any] { ["type": "integer", "format": "int64"] }
    private static var positiveCredits: [String: Any] { ["type": "integer", "format": "int64", "minimum": 1] }
    private static func nullable(_ type: String, format: String? = nil) -> [String: Any] {
        var schema: [String: Any] = ["type": [type, "null"]]
        if let format { schema["format"] = format }
        return schema
    }

    private static func json(_ schema: [String: Any]) -> [String: Any] { ["application/json": ["schema": schema]] }

    private static func answer(_ description: String, _ schema: [String: Any]? = nil) -> [String: Any] {
        var response: [String: Any] = ["description": description]
        if let schema { response["content"] = json(schema) }
        return response
    }

    private static func problem(_ description: String) -> [String: Any] {
        ["description": description, "content": ["application/problem+json": ["schema": ref("Problem")]]]
    }

    private enum Security { case none, session, apiKey, either }

    private static func operation(
        _ summary: String, security: Security, body: [String: Any]? = nil, parameters: [[String: Any]] = [],
        idempotent: Bool = false, responses: [String: [String: Any]]
    ) -> [String: Any] {
        var op: [String: Any] = ["summary": summary]
        var responses = responses
        switch security {
        case .none: op["security"] = [[String: Any]]()
        case .session: op["security"] = [["session": [String]()]]
        case .apiKey: op["security"] = [["apiKey": [String]()]]
        case .either: op["security"] = [["session": [String]()], ["apiKey": [String]()]]
        }
        if security != .none { responses["401"] = problem("No credential, or an unknown, expired or revoked one") }
        if responses["503"] == nil {
            responses["503"] = ["description": "The database gave no connection within --database-wait, its connection broke, or the request outlived --request-timeout; `Retry-After` says when to retry, and `detail` whether the request may have taken effect", "headers": retryAfter, "content": ["application/problem+json": ["schema": ref("Problem")]]]
        }
        if let body {
            op["requestBody"] = ["required": true, "content": json(body)]
            responses["400"] = problem("Invalid JSON, an unknown field, a missing field, a wrong type, or a NUL character in a string")
            responses["408"] = problem("The body did not arrive within --request-timeout; the connection is closed")
            responses["413"] = problem("The body is over 1 MiB")
        }
        var parameters = parameters
        if idempotent {
            parameters.append([
                "name": "Idempotency-Key", "in": "header", "required": false,
                "description": "Retry-safe key (1 to 255 visible ASCII characters, kept 24 hours): the same key and body answer with the first response and `Idempotent-Replayed: true`; another body, or a retry while the first request runs, is 409.",
                "schema": ["type": "string", "pattern": "^[!-~]{1,255}$"],
            ])
            responses["409"] = problem("The Idempotency-Key was used with another request, or its first request is still running")
            if responses["400"] == nil { responses["400"] = problem("A malformed Idempotency-Key") }
        }
        if !parameters.isEmpty { op["parameters"] = parameters }
        op["responses"] = responses
        return op
    }

    private static var retryAfter: [String: Any] {
        ["Retry-After": ["description": "Seconds to wait before retrying", "schema": ["type": "integer", "minimum": 0]]]
    }

    private static func pathParameter(_ name: String, _ description: String) -> [String: Any] {
        ["name": name, "in": "path", "required": true, "description": description, "schema": id]
    }

    private static func queryParameter(_ name: String, _ description: String, _ schema: [String: Any]) -> [String: Any] {
        ["name": name, "in": "query", "required": false, "description": description, "schema": schema]
    }

    private static var teamQuery: [String: Any] { queryParameter("team_id", "Read a team's account (you must be a member) instead of your own", id) }

    // MARK: - The document

    static var document: [String: Any] {
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

    static var securitySchemes: [String: Any] {
        [
        "session": ["type": "http", "scheme": "bearer", "description": "A session token (tly_sess_…) from signup or login"],
        "apiKey": ["type": "http", "scheme": "bearer", "description": "An API key (tly_…) from POST /v1/api-keys"],
        ]
    }

    static var schemas: [String: Any] {
        [
            "JSONValue": [
                "description": "Any JSON value without the NUL character in its strings",
                "anyOf": [
                    ["type": "string", "pattern": withoutNUL], ["type": "number"], ["type": "boolean"], ["type": "null"],
                    ["type": "array", "items": ref("JSONValue")],
                    ["type": "object", "propertyNames": ["pattern": withoutNUL], "additionalProperties": ref("JSONValue")],
                ],
            ],
            "Problem": object(["type": text, "title": text, "status": ["type": "integer"], "detail": text], required: ["type", "title", "status", "detail"]),
            "User": object(
                ["id": id, "email": text, "name": nullable("string"), "is_admin": ["type": "boolean"], "created_at": time],
                required: ["id", "email", "is_admin", "created_at"]),
            "Session": object(["user": ref("User"), "token": text, "expires_at": time], required: ["user", "token", "expires_at"]),
            "Team": object(
                ["id": id, "name": text, "role": ["type": "string", "enum": ["owner", "admin", "member"]], "created_at": time],
                required: ["id", "name", "role", "created_at"]),
            "APIKey": object(
                [
                    "id": id, "name": text, "prefix": text, "team_id": nullable("string", format: "uuid"),
                    "credit_limit": nullable("integer", format: "int64"), "used": credits, "created_at": time, "created_by": id,
                    "revoked_at": nullable("string", format: "date-time"), "revoked_reason": nullable("string"),
                ], required: ["id", "name", "prefix", "used", "created_at", "created_by"]),
            "CreatedAPIKey": object(
                [
                    "api_key": ref("APIKey"), "key": ["type": "string", "description": "Shown this once"],
                    "key_shown_once": ["type": "string", "description": "Instead of key, in an Idempotency-Key replay: the key is never stored"],
                ], required: ["api_key"]),
            "Grant": object(
                [
                    "id": id, "account_id": id, "amount": credits, "priority": ["type": "integer"], "expires_at": nullable("string", format: "date-time"),
                    "description": nullable("string"), "balance": credits,
                ], required: ["id", "account_id", "amount", "priority", "balance"]),
            "Balance": object(
                [
                    "account_id": id, "balance": credits, "held": credits, "available": credits,
                    "grants": [
                        "type": "array",
                        "items": object(
                            ["id": id, "remaining": credits, "expires_at": nullable("string", format: "date-time"), "priority": ["type": "integer"]],
                            required: ["id", "remaining", "priority"]),
                    ],
                ], required: ["account_id", "balance", "held", "available", "grants"]),
            "ConsumeResult": object(["transaction_id": credits, "balance": credits, "available": credits], required: ["transaction_id", "balance", "available"]),
            "Hold": object(
                [
                    "hold_id": id, "status": ["type": "string", "enum": ["open", "captured", "released", "expired"]], "amount": credits,
                    "captured": credits, "released": credits, "transaction_id": credits, "expires_at": time,
                    "balance": credits, "held": credits, "available": credits,
                ], required: ["hold_id", "status", "amount", "expires_at", "balance", "held", "available"]),
            "LedgerEntry": object(
                [
                    "id": credits, "kind": ["type": "string", "enum": ["grant", "consume", "refund", "expire", "capture", "adjust"]],
                    "amount": credits, "balance_after": credits, "description": nullable("string"), "metadata": [String: Any](),
                    "api_key_id": nullable("string", format: "uuid"), "grant_id": nullable("string", format: "uuid"),
                    "hold_id": nullable("string", format: "uuid"), "created_at": time,
                ], required: ["id", "kind", "amount", "balance_after", "created_at"]),
            "LedgerPage": object(
                ["account_id": id, "transactions": ["type": "array", "items": ref("LedgerEntry")], "has_more": ["type": "boolean"], "next_cursor": ["type": ["string", "null"], "pattern": Ledger.cursorPattern]],
                required: ["account_id", "transactions", "has_more"]),
            "Health": object(
                [
                    "status": ["type": "string", "enum": ["ok", "unavailable"]],
                    "database": object(
                        ["reachable": ["type": "boolean"], "latency_ms": ["type": "number"], "server_version": text, "error": text], required: ["reachable"]),
                ], required: ["status", "database"]),
            "Readiness": object(
                ["status": ["type": "string", "enum": ["ready", "not-ready"]], "reasons": ["type": "array", "items": text]], required: ["status", "reasons"]),
        ]
    }

    /// Request bodies, by the route they belong to (the keys of `RequestBodies.fields`).
    static var bodies: [String: [String: Any]] {
        [
            "POST /v1/auth/signup": body(
                ["email": email, "password": password, "name": ["type": "string", "maxLength": TextRules.nameMaximum, "pattern": withoutNUL]],
                required: ["email", "password"]),
            "POST /v1/auth/login": body(["email": text, "password": text], required: ["email", "password"]),
            "POST /v1/teams": body(["name": name], required: ["name"]),
            "POST /v1/teams/{team}/members": body(["email": email, "role": ["type": "string", "enum": ["owner", "admin", "member"]]], required: ["email"]),
            "POST /v1/api-keys": body(
                ["name": name, "team_id": id, "credit_limit": ["type": "integer", "format": "int64", "minimum": 0, "description": "Most this key may ever spend"]],
                required: ["name"]),
            "POST /v1/admin/grants": body(
                [
                    "user_id": id, "team_id": id, "amount": positiveCredits, "expires_at": time,
                    "priority": ["type": "integer", "description": "Lower burns first (default 0)"], "description": text,
                ], required: ["amount", "description"]).merging([
                    // Exactly one of the two, as a string (a null one counts as absent).
                    "oneOf": [
                        ["required": ["user_id"], "properties": ["user_id": ["type": "string"]]],
                        ["required": ["team_id"], "properties": ["team_id": ["type": "string"]]],
                    ],
                ]) { $1 },
            "POST /v1/credits/consume": body(
                [
                    "amount": positiveCredits, "description": text,
                    "metadata": [
                        "type": "object", "description": "Any JSON object, kept in the ledger (no NUL character in its keys or strings)",
                        "propertyNames": ["pattern": withoutNUL], "additionalProperties": ref("JSONValue"),
                    ],
                ],
                required: ["amount"]),
            "POST /v1/credits/holds": body(
                [
                    "amount": positiveCredits,
                    "ttl_seconds": ["type": "integer", "minimum": 1, "maximum": 604800, "default": CreditsController.defaultHoldTTL],
                    "description": text,
                ], required: ["amount"]),
            "POST /v1/credits/holds/{hold}/capture": body(
                ["amount": ["type": "integer", "format": "int64", "minimum": 1, "description": "At most the held amount; default all of it"]]),
        ]
    }

    static var paths: [String: Any] {
        let holdID = pathParameter("hold", "The hold's id")
        let paymentRequired = problem("The account's available credits or the key's credit_limit cannot cover it; nothing was written")
        return [
            "/healthz": ["get": operation("Liveness: whether the database answers", security: .none, responses: [
                "200": answer("The database answers", ref("Health")), "503": answer("The database is unreachable", ref("Health")),
            ])],
            "/readyz": ["get": operation("Readiness: database reachable and its schema current for this build", security: .none, responses: [
                "200": answer("Ready for traffic", ref("Readiness")), "503": answer("Not ready, with the reasons", ref("Readiness")),
            ])],
            "/metrics": ["get": operation("Prometheus metrics", security: .none, responses: [
                "200": ["description": "Prometheus text format", "content": ["text/plain": ["schema": text]]],
            ])],
            "/openapi.json": ["get": operation("This document", security: .none, responses: ["200": answer("OpenAPI 3.1", ["type": "object"])])],
            "/v1/auth/signup": ["post": operation("Create an account and a session", security: .none, body: bodies["POST /v1/auth/signup"], responses: [
                "201": answer("Signed up", ref("Session")), "409": problem("The email is taken"),
            ])],
            "/v1/auth/login": ["post": operation("Log in", security: .none, body: bodies["POST /v1/auth/login"], responses: [
                "200": answer("Logged in", ref("Session")), "401": problem("Wrong email or password (the same answer for both)"),
            ])],
            "/v1/auth/logout": ["post": operation("End this session", security: .session, responses: ["204": answer("Logged out")])],
            "/v1/me": ["get": operation("The session's user", security: .session, responses: [
                "200": answer("The user", object(["user": ref("User")], required: ["user"])),
            ])],
            "/v1/teams": [
                "post": operation("Create a team; you become its owner", security: .session, body: bodies["POST /v1/teams"], idempotent: true, responses: [
                    "201": answer("Created", object(["team": ref("Team")], required: ["team"])),
                ]),
                "get": operation("Your teams", security: .session, responses: [
                    "200": answer("Teams with your role", object(["teams": ["type": "array", "items": ref("Team")]], required: ["teams"])),
                ]),
            ],
            "/v1/teams/{team}/members": ["post": operation(
                "Add a user to a team (owners and admins)", security: .session, body: bodies["POST /v1/teams/{team}/members"],
                parameters: [pathParameter("team", "The team's id")], idempotent: true, responses: [
                    "201": answer("Added"), "403": problem("Your role cannot add members"), "404": problem("No such team among yours, or no such user"),
                ])],
            "/v1/teams/{team}/members/{user}": ["delete": operation(
                "Remove a member (owners and admins), or leave", security: .session,
                parameters: [pathParameter("team", "The team's id"), pathParameter("user", "The member's user id")], responses: [
                    "204": answer("Removed"), "403": problem("Your role cannot remove members"), "404": problem("No such team or member"),
                    "409": problem("The last owner cannot leave"),
                ])],
            "/v1/api-keys": [
                "post": operation("Create an API key (shown once)", security: .session, body: bodies["POST /v1/api-keys"], idempotent: true, responses: [
                    "201": answer("Created", ref("CreatedAPIKey")), "403": problem("Only a team's owners and admins create its keys"),
                    "404": problem("No such team among yours"),
                ]),
                "get": operation("Your API keys (never the key itself)", security: .session, responses: [
                    "200": answer("Keys", object(["api_keys": ["type": "array", "items": ref("APIKey")]], required: ["api_keys"])),
                ]),
            ],
            "/v1/api-keys/{key}": ["delete": operation(
                "Revoke a key at once", security: .session, parameters: [pathParameter("key", "The key's id")], responses: [
                    "204": answer("Revoked"), "404": problem("No such key among yours"),
                ])],
            "/v1/admin/grants": ["post": operation(
                "Grant credits to a user's or a team's account (admins)", security: .session, body: bodies["POST /v1/admin/grants"], idempotent: true,
                responses: [
                    "201": answer("Granted", ref("Grant")), "403": problem("Only admins grant credits"), "404": problem("No such user or team"),
                ])],
            "/v1/credits/balance": ["get": operation(
                "The account's balance, held and available credits and open grants", security: .either, parameters: [teamQuery], responses: [
                    "200": answer("The balance", ref("Balance")), "400": problem("team_id with an API key (a key reads only the account it spends from)"),
                    "404": problem("No such team among yours"),
                ])],
            "/v1/credits/transactions": ["get": operation(
                "The account's ledger, newest first", security: .either,
                parameters: [
                    teamQuery,
                    queryParameter("limit", "Entries per page", ["type": "integer", "minimum": 1, "maximum": 100, "default": 20]),
                    queryParameter("cursor", "A previous page's next_cursor: the id of its last entry; the page holds older entries", [
                        "type": "string", "pattern": Ledger.cursorPattern,
                    ]),
                ], responses: [
                    "200": answer("A page", ref("LedgerPage")), "400": problem("A bad limit or cursor, or team_id with an API key"),
                    "404": problem("No such team among yours"),
                ])],
            "/v1/credits/consume": ["post": operation(
                "Spend credits from the API key's account", security: .apiKey, body: bodies["POST /v1/credits/consume"], idempotent: true,
                responses: ["200": answer("Spent", ref("ConsumeResult")), "402": paymentRequired])],
            "/v1/credits/holds": ["post": operation(
                "Reserve credits (available drops until the hold is captured, released or expires)", security: .apiKey,
                body: bodies["POST /v1/credits/holds"], idempotent: true, responses: ["201": answer("Reserved", ref("Hold")), "402": paymentRequired])],
            "/v1/credits/holds/{hold}/capture": ["post": operation(
                "Spend up to the held amount; the rest returns", security: .apiKey, body: bodies["POST /v1/credits/holds/{hold}/capture"],
                parameters: [holdID], idempotent: true, responses: [
                    "200": answer("Captured", ref("Hold")), "404": problem("No such hold on this key's account"),
                    "409": problem("The hold is already captured, released or expired; or an Idempotency-Key conflict"),
                ])],
            "/v1/credits/holds/{hold}/release": ["post": operation(
                "Return all of a hold", security: .apiKey, parameters: [holdID], idempotent: true, responses: [
                    "200": answer("Released", ref("Hold")), "404": problem("No such hold on this key's account"),
                    "409": problem("The hold is already captured, released or expired; or an Idempotency-Key conflict"),
                ])],
        ]
    }
}
