import Foundation
import Hummingbird
import TallyCredits

/// The document's schemas: the answers' shapes and the request bodies, with the rules the server enforces.
extension OpenAPIDocument {
    static var schemas: JSONValue {
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
            "SessionInfo": object(
                [
                    "id": id, "created_at": time, "last_used_at": time,
                    "expires_at": time.adding("description", "When it ends unless used again: the earlier of its idle end and its absolute end"),
                    "client_address": nullable("string"), "user_agent": nullable("string"),
                    "current": ["type": "boolean", "description": "The session that asked"],
                ], required: ["id", "created_at", "last_used_at", "expires_at", "current"]),
            "Ended": object(["ended_sessions": ["type": "integer", "minimum": 0]], required: ["ended_sessions"]),
            "Team": object(
                ["id": id, "name": text, "role": ["type": "string", "enum": ["owner", "admin", "member"]], "created_at": time],
                required: ["id", "name", "role", "created_at"]),
            "TeamMember": object(
                [
                    "user_id": id, "email": text, "name": nullable("string"),
                    "role": ["type": "string", "enum": ["owner", "admin", "member"]], "joined_at": time,
                ], required: ["user_id", "email", "role", "joined_at"]),
            "Invitation": object(
                [
                    "id": id, "team_id": id, "team_name": text, "email": text,
                    "role": ["type": "string", "enum": ["owner", "admin", "member"]],
                    "invited_by": ["type": "string", "description": "The inviter's email"], "created_at": time, "expires_at": time,
                ], required: ["id", "team_id", "team_name", "email", "role", "invited_by", "created_at", "expires_at"]),
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
            "ServiceKey": object(
                [
                    "id": id, "name": text, "prefix": text, "scopes": ["type": "array", "items": scope], "created_at": time,
                    "created_by": nullable("string", format: "uuid"), "created_by_name": text,
                    "last_used_at": nullable("string", format: "date-time").adding("description", "Updated at most once a minute"),
                    "revoked_at": nullable("string", format: "date-time"),
                ], required: ["id", "name", "prefix", "scopes", "created_at", "created_by_name"]),
            "CreatedServiceKey": object(
                [
                    "service_key": ref("ServiceKey"), "key": ["type": "string", "description": "Shown this once"],
                    "key_shown_once": ["type": "string", "description": "Instead of key, in an Idempotency-Key replay: the key is never stored"],
                ], required: ["service_key"]),
            "Customer": object(
                [
                    "external_id": externalID, "kind": ["type": "string", "enum": ["user", "team"]],
                    "id": id.adding("description", "Tally's id of the user or team"), "email": nullable("string"), "name": nullable("string"),
                    "owner": nullable("string").adding("description", "A team's first owner, by external id"), "created_at": time,
                ], required: ["external_id", "kind", "id", "created_at"]),
            "BalanceAlert": object(
                [
                    "id": id, "account_id": id, "threshold": nullable("integer", format: "int64"), "percent": nullable("integer"),
                    "armed": ["type": "boolean", "description": "True while the available credits are at or above the threshold: the alert can fire"],
                    "created_at": time,
                ], required: ["id", "account_id", "armed", "created_at"]),
            "BurnDown": object(
                [
                    "days": ["type": "array", "description": "Oldest first, today last; none before the account's first entry", "items": object(
                        ["day": time, "balance": credits, "granted": credits, "spent": credits], required: ["day", "balance", "granted", "spent"])],
                    "spend_per_day": ["type": "number", "minimum": 0], "rate_days": ["type": "integer", "minimum": 0],
                    "available": credits,
                    "projection": object(
                        [
                            "runs_out_at": nullable("string", format: "date-time").adding("description", "Null: not within a year (see reason)"),
                            "reason": nullable("string"), "expiring": credits.adding("description", "Credits that will expire unspent on the way"),
                            "topup_requested_at": nullable("string", format: "date-time"),
                            "path": ["type": "array", "items": credits, "description": "Projected available credits at each day's end ahead, today first"],
                        ], required: ["expiring", "path"]),
                ], required: ["days", "spend_per_day", "rate_days", "available", "projection"]),
            "KeySpend": object(
                [
                    "keys": ["type": "array", "items": object(
                        ["id": nullable("string", format: "uuid").adding("description", "Null: the other keys together"), "name": text, "prefix": nullable("string"), "total": credits],
                        required: ["name", "total"])],
                    "days": ["type": "array", "items": object(
                        ["day": time, "spent": ["type": "array", "items": credits, "description": "By key, in the order of keys"]], required: ["day", "spent"])],
                ], required: ["keys", "days"]),
            "TopUpRule": object(
                [
                    "id": id, "account_id": id,
                    "below": credits.adding("description", "The rule fires when the available credits fall below this"),
                    "amount": nullable("integer", format: "int64").adding("description", "Grant this much (or top_up_to)"),
                    "top_up_to": nullable("integer", format: "int64").adding("description", "Grant enough to bring the available credits to this (or amount)"),
                    "action": ["type": "string", "enum": ["request", "grant"], "description": "request: topup.requested, for you to charge and grant; grant: granted at once (topup.granted)"],
                    "max_per_day": ["type": "integer", "minimum": 1, "maximum": 1000, "description": "Most top-ups in any 24 hours; past it, topup.capped once"],
                    "expires_in_seconds": nullable("integer", format: "int64").adding("description", "Granted credits expire this long after (action grant)"),
                    "description": text,
                    "armed": ["type": "boolean", "description": "True while the available credits are at or above `below`: the rule can fire"],
                    "created_at": time,
                ], required: ["id", "account_id", "below", "action", "max_per_day", "description", "armed", "created_at"]),
            "TopUp": object(
                [
                    "id": id.adding("description", "Send it as the Idempotency-Key of the grant that pays a requested top-up"),
                    "rule_id": nullable("string", format: "uuid").adding("description", "Null once the rule was removed"),
                    "action": ["type": "string", "enum": ["request", "grant"]], "amount": credits,
                    "available": credits.adding("description", "The available credits when it fired"),
                    "transaction_id": nullable("integer", format: "int64").adding("description", "The ledger entry that crossed the line (null when a hold did)"),
                    "grant_id": nullable("string", format: "uuid"), "event_id": nullable("string"), "created_at": time,
                ], required: ["id", "action", "amount", "available", "created_at"]),
            "RecurringGrant": object(
                [
                    "id": id, "account_id": id, "amount": credits, "every": ["type": "string", "enum": ["day", "week", "month"]],
                    "anchor": time.adding("description", "When period 0 starts; periods count from it in UTC (a month from the 31st is the month's last day)"),
                    "expires_in_seconds": nullable("integer", format: "int64").adding("description", "Each grant expires this long after its period starts"),
                    "rollover_max": nullable("integer", format: "int64").adding("description", "Most credits of earlier periods' grants kept when a period starts (null: all)"),
                    "rollover_min": credits.adding("description", "Least credits of earlier periods there when a period starts: its grant makes up the rest"),
                    "priority": priority, "description": text,
                    "next_period": ["type": "integer", "minimum": 0], "next_at": time,
                    "ended_at": nullable("string", format: "date-time"), "created_at": time,
                    "periods": ["type": "array", "description": "The last twelve periods issued, newest first", "items": object(
                        [
                            "period": ["type": "integer", "minimum": 0], "starts_at": time,
                            "grant_id": nullable("string", format: "uuid").adding("description", "Null: its grant would have expired before it was issued"),
                            "rolled_over": credits, "forfeited": credits, "issued_at": time,
                        ], required: ["period", "starts_at", "rolled_over", "forfeited", "issued_at"])],
                ], required: ["id", "account_id", "amount", "every", "anchor", "rollover_min", "priority", "description", "next_period", "next_at", "created_at", "periods"]),
            "WebhookEndpoint": object(
                [
                    "id": id, "url": text, "account_id": nullable("string", format: "uuid").adding("description", "Null: every account's events"),
                    "event_types": ["type": ["array", "null"], "items": eventType, "description": "Null: every type"],
                    "description": nullable("string"), "created_at": time,
                    "disabled_at": nullable("string", format: "date-time"), "disabled_reason": nullable("string"),
                    "previous_secret_until": nullable("string", format: "date-time").adding("description", "Until when the secret before the last rotation signs too"),
                ], required: ["id", "url", "created_at"]),
            "WebhookEndpointWithSecret": object(
                [
                    "webhook": ref("WebhookEndpoint"),
                    "secret": ["type": "string", "pattern": "^whsec_[A-Za-z0-9+/=]+$", "description": "The signing secret (Standard Webhooks), shown this once"],
                    "key_shown_once": ["type": "string", "description": "Instead of secret, in an Idempotency-Key replay: the secret is never kept in the clear"],
                ], required: ["webhook"]),
            "WebhookDeliveryPage": object(
                [
                    "deliveries": ["type": "array", "items": object(
                        [
                            "id": ["type": "integer", "format": "int64"], "event_id": text, "event_type": eventType,
                            "sequence": ["type": "integer", "format": "int64", "description": "The event's number in its account's sequence"],
                            "status": ["type": "string", "enum": ["pending", "delivered", "failed"]],
                            "attempts": ["type": "array", "items": object(
                                [
                                    "attempt": ["type": "integer"], "at": time, "status_code": nullable("integer"),
                                    "duration_ms": ["type": "integer"], "error": nullable("string"),
                                ], required: ["attempt", "at", "duration_ms"])],
                            "next_attempt_at": nullable("string", format: "date-time"), "delivered_at": nullable("string", format: "date-time"),
                            "last_error": nullable("string"), "created_at": time,
                        ], required: ["id", "event_id", "event_type", "sequence", "status", "attempts", "created_at"])],
                    "next_cursor": ["type": ["string", "null"], "pattern": JSONValue(Ledger.cursorPattern)],
                ], required: ["deliveries"]),
            "Grant": object(
                [
                    "id": id, "account_id": id, "amount": credits, "priority": priority, "expires_at": nullable("string", format: "date-time"),
                    "description": nullable("string"), "balance": credits,
                ], required: ["id", "account_id", "amount", "priority", "balance"]),
            "Balance": object(
                [
                    "account_id": id, "balance": credits, "held": credits, "available": credits,
                    "grants": [
                        "type": "array",
                        "items": object(
                            ["id": id, "remaining": credits, "expires_at": nullable("string", format: "date-time"), "priority": priority],
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
                    "amount": credits, "balance_after": credits, "description": nullable("string"), "metadata": [:],
                    "api_key_id": nullable("string", format: "uuid"), "grant_id": nullable("string", format: "uuid"),
                    "hold_id": nullable("string", format: "uuid"), "created_at": time,
                ], required: ["id", "kind", "amount", "balance_after", "created_at"]),
            "LedgerPage": object(
                ["account_id": id, "transactions": ["type": "array", "items": ref("LedgerEntry")], "has_more": ["type": "boolean"], "next_cursor": ["type": ["string", "null"], "pattern": JSONValue(Ledger.cursorPattern)]],
                required: ["account_id", "transactions", "has_more"]),
            "AdminAuditPage": object(
                [
                    "entries": ["type": "array", "items": object(
                        [
                            "id": ["type": "integer", "format": "int64"], "at": time, "actor_user_id": nullable("string", format: "uuid"),
                            "actor": text, "action": text, "request_id": nullable("string"), "subject": ["type": "object"],
                        ], required: ["id", "at", "actor", "action", "subject"])],
                    "next_cursor": ["type": ["string", "null"], "pattern": JSONValue(Ledger.cursorPattern)],
                ], required: ["entries"]),
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
    static var bodies: [String: JSONValue] {
        [
            "POST /v1/auth/signup": body(
                ["email": email, "password": password, "name": name],
                required: ["email", "password"]),
            "POST /v1/auth/verify-email": body(["token": text], required: ["token"]),
            "POST /v1/auth/login": body(["email": text, "password": text], required: ["email", "password"]),
            "POST /v1/auth/password-reset": body(["email": email], required: ["email"]),
            "POST /v1/auth/password-reset/confirm": body(["token": text, "new_password": password], required: ["token", "new_password"]),
            "POST /v1/auth/password": body(["current_password": text, "new_password": password], required: ["current_password", "new_password"]),
            "POST /v1/teams": body(["name": name], required: ["name"]),
            "POST /v1/teams/{team}/invitations": body(["email": email, "role": ["type": "string", "enum": ["owner", "admin", "member"]]], required: ["email"]),
            "POST /v1/api-keys": body(
                ["name": name, "team_id": id, "credit_limit": ["type": "integer", "format": "int64", "minimum": 0, "description": "Most this key may ever spend"]],
                required: ["name"]),
            "POST /v1/service-keys": body(
                ["name": name, "scopes": ["type": "array", "items": scope, "minItems": 1, "uniqueItems": true]], required: ["name", "scopes"]),
            "PUT /v1/customers/{customer}": body(
                [
                    "kind": ["type": "string", "enum": ["user", "team"], "default": "user"],
                    "email": email.adding("description", "A user's (required for a user)"),
                    "name": name.adding("description", "A team's name (required for a team); a user's display name"),
                    "owner": externalID.adding("description", "A team's owner: the external id of a user customer"),
                ]).adding(
                    // A user (kind absent or "user") with an email and no owner, or a team with a name and no email.
                    "oneOf", [
                        ["required": ["email"], "properties": ["kind": ["enum": ["user"]], "email": ["type": "string"], "owner": ["type": "null"]]],
                        ["required": ["kind", "name"], "properties": ["kind": ["enum": ["team"]], "name": ["type": "string"], "email": ["type": "null"]]],
                    ]),
            "POST /v1/customers/{customer}/grants": body(
                [
                    "amount": positiveCredits, "expires_at": time,
                    "priority": priority.adding("description", "Lower burns first (default 0)"), "description": entryDescription,
                ], required: ["amount", "description"]),
            "POST /v1/customers/{customer}/api-keys": body(
                ["name": name, "credit_limit": ["type": "integer", "format": "int64", "minimum": 0, "description": "Most this key may ever spend"]],
                required: ["name"]),
            "POST /v1/customers/{customer}/alerts": body(
                ["threshold": ["type": "integer", "format": "int64", "minimum": 0], "percent": ["type": "integer", "minimum": 1, "maximum": 100]]
            ).adding("oneOf", [
                ["required": ["threshold"], "properties": ["threshold": ["type": "integer"], "percent": ["type": "null"]]],
                ["required": ["percent"], "properties": ["percent": ["type": "integer"], "threshold": ["type": "null"]]],
            ]),
            "POST /v1/customers/{customer}/topup-rules": body(
                [
                    "below": positiveCredits.adding("description", "Fire when the available credits fall below this"),
                    "amount": positiveCredits.adding("description", "Grant this much"),
                    "top_up_to": positiveCredits.adding("description", "Grant enough to bring the available credits to this (at least below)"),
                    "action": ["type": "string", "enum": ["request", "grant"], "default": "request"],
                    "max_per_day": ["type": "integer", "minimum": 1, "maximum": 1000, "default": JSONValue(TopUpRuleRequest.defaultMaxPerDay)],
                    "expires_in_seconds": ["type": "integer", "format": "int64", "minimum": 1, "maximum": .integer(TextRules.longestGrantLife)],
                    "description": entryDescription,
                ], required: ["below"]).adding("oneOf", [
                    ["required": ["amount"], "properties": ["amount": ["type": "integer"], "top_up_to": ["type": "null"]]],
                    ["required": ["top_up_to"], "properties": ["top_up_to": ["type": "integer"], "amount": ["type": "null"]]],
                ]),
            "POST /v1/customers/{customer}/recurring-grants": body(
                [
                    "amount": positiveCredits, "every": ["type": "string", "enum": ["day", "week", "month"]],
                    "anchor": time.adding("description", "When the first period starts, within a year of now (default now); the period now falls in is issued at once"),
                    "expires_in_seconds": ["type": "integer", "format": "int64", "minimum": 1, "maximum": .integer(TextRules.longestGrantLife)],
                    "rollover_max": ["type": "integer", "format": "int64", "minimum": 0, "description": "Default: no cap; 0: use it or lose it"],
                    "rollover_min": ["type": "integer", "format": "int64", "minimum": 0, "default": 0, "description": "At most rollover_max: the period's grant makes what is left of earlier ones up to this"],
                    "priority": priority.adding("description", "Lower burns first (default 0)"), "description": entryDescription,
                ], required: ["amount", "every", "description"]),
            "POST /v1/webhooks": body(
                [
                    "url": ["type": "string", "format": "uri", "pattern": "^https?://", "maxLength": 2000, "description": "http(s); public addresses only unless the server allows private ones"],
                    "event_types": ["type": "array", "items": eventType, "minItems": 1, "description": "Default: every type"],
                    "customer": externalID.adding("description", "Only this customer's events (default: every account's)"),
                    "description": entryDescription,
                ], required: ["url"]),
            "POST /v1/admin/grants": body(
                [
                    "user_id": id, "team_id": id, "amount": positiveCredits, "expires_at": time,
                    "priority": priority.adding("description", "Lower burns first (default 0)"), "description": entryDescription,
                ], required: ["amount", "description"]).adding(
                    // Exactly one of the two, as a string (a null one counts as absent).
                    "oneOf", [
                        ["required": ["user_id"], "properties": ["user_id": ["type": "string"]]],
                        ["required": ["team_id"], "properties": ["team_id": ["type": "string"]]],
                    ]),
            "POST /v1/credits/consume": body(
                [
                    "amount": positiveCredits, "description": entryDescription,
                    "metadata": [
                        "type": "object",
                        "description": JSONValue("Any JSON object, kept in the ledger (no NUL character in its keys or strings), at most \(TextRules.metadataMaximumDepth) levels deep (objects and arrays within each other) and \(TextRules.metadataMaximumBytes) bytes as JSON; more is a 400"),
                        "propertyNames": ["pattern": withoutNUL], "additionalProperties": ref("JSONValue"),
                    ],
                ],
                required: ["amount"]),
            "POST /v1/credits/holds": body(
                [
                    "amount": positiveCredits,
                    "ttl_seconds": ["type": "integer", "minimum": 1, "maximum": 604800, "default": JSONValue(CreditsController.defaultHoldTTL)],
                    "description": entryDescription,
                ], required: ["amount"]),
            "POST /v1/credits/holds/{hold}/capture": body(
                ["amount": ["type": "integer", "format": "int64", "minimum": 1, "description": "At most the held amount; default all of it"]]),
        ]
    }
}

extension OpenAPIDocument {
    static var eventType: JSONValue { ["type": "string", "enum": .array(WebhookEventType.allCases.map { JSONValue($0.rawValue) })] }
    static var scope: JSONValue { ["type": "string", "enum": .array(ServiceScope.allCases.map { JSONValue($0.rawValue) })] }
    static var externalID: JSONValue {
        ["type": "string", "pattern": JSONValue(TextRules.externalID), "description": "The product's own id: 1 to 255 visible ASCII characters, no spaces"]
    }
}

extension JSONValue {
    /// This object with `key` set to `value`.
    func adding(_ key: String, _ value: JSONValue) -> JSONValue {
        var copy = self
        copy[key] = value
        return copy
    }
}
