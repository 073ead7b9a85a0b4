import Foundation
import Hummingbird
import TallyCredits

/// The document's paths: every route, its credential, parameters and answers.
extension OpenAPIDocument {
    static var paths: JSONValue {
        let holdID = pathParameter("hold", "The hold's id")
        let invitationList = object(["invitations": ["type": "array", "items": ref("Invitation")]], required: ["invitations"])
        let customerID: JSONValue = [
            "name": "customer", "in": "path", "required": true, "schema": externalID,
            "description": "The product's own id for the user or team (percent-encode characters such as | in URLs)",
        ]
        let scopeMissing = problem("The service key lacks the route's scope", ["forbidden"])
        let noCustomer = problem("No customer with this external id", ["not-found"])
        let webhookID = pathParameter("webhook", "The endpoint's id")
        let webhooksForbidden = problem("Only admins and service keys with webhooks:write manage webhooks", ["forbidden"])
        let noWebhook = problem("No such webhook endpoint", ["not-found"])
        let paymentRequired = problem("The account's available credits or the key's credit_limit cannot cover it; nothing was written", ["insufficient-credits", "key-limit-exceeded"])
        return [
            "/healthz": ["get": operation("Liveness: whether the database answers", security: .none, responses: [
                "200": answer("The database answers", ref("Health")), "503": answer("The database is unreachable", ref("Health")),
            ])],
            "/readyz": ["get": operation("Readiness: database reachable and its schema current for this build", security: .none, responses: [
                "200": answer("Ready for traffic", ref("Readiness")), "503": answer("Not ready, with the reasons", ref("Readiness")),
            ])],
            "/openapi.json": ["get": operation("This document", security: .none, responses: ["200": answer("OpenAPI 3.1", ["type": "object"])])],
            "/v1/auth/signup": ["post": operation(
                "Sign up: a link to confirm the address (and start a session) is mailed; an address that already has an account gets a mail saying someone tried. The same answer either way",
                security: .none, body: bodies["POST /v1/auth/signup"], responses: [
                "202": answer("Check your email", object(["detail": text], required: ["detail"])),
                "429": tooManyAttempts("Too many sign-ups from this address within the hour (ten are free, then one per doubling wait); `Retry-After` says when"),
                "503": unavailable((description: "more password hashing is queued than the server takes at once", types: ["server-busy"])),
            ])],
            "/v1/auth/verify-email": ["post": operation(
                "Confirm your address with the mailed token (once, within 24 hours): it sets the password chosen at sign-up and starts a session",
                security: .none, body: bodies["POST /v1/auth/verify-email"], responses: [
                    "200": answer("Verified and logged in", ref("Session")),
                ])],
            "/v1/auth/login": ["post": operation("Log in", security: .none, body: bodies["POST /v1/auth/login"], responses: [
                "200": answer("Logged in", ref("Session")), "401": problem("Wrong email or password (the same answer for both)", ["invalid-credentials"]),
                "403": problem("The password is right but the address is not confirmed yet: follow the mailed link", ["email-unverified"]),
                "429": tooManyAttempts("Too many failed logins for this account from this address (five an hour are free), or from this address (fifty); each further failure doubles the wait, up to 15 minutes and an hour. `Retry-After` says when to try again; other addresses are not slowed"),
                "503": unavailable((description: "more password hashing is queued than the server takes at once", types: ["server-busy"])),
            ])],
            "/v1/auth/password-reset": ["post": operation(
                "Mail a password reset link (the same answer whether an account has the email or not)", security: .none,
                body: bodies["POST /v1/auth/password-reset"], responses: [
                    "202": answer("Accepted", object(["detail": text], required: ["detail"])),
                    "429": tooManyAttempts("Too many requests from this address within the hour (counted with sign-ups); `Retry-After` says when"),
                ])],
            "/v1/auth/password-reset/confirm": ["post": operation(
                "Set a new password with a mailed reset token (once, within 30 minutes); every session of the account ends", security: .none,
                body: bodies["POST /v1/auth/password-reset/confirm"], responses: [
                    "200": answer("Changed; how many sessions ended", ref("Ended")),
                    "503": unavailable((description: "more password hashing is queued than the server takes at once", types: ["server-busy"])),
                ])],
            "/v1/auth/logout": ["post": operation("End this session", security: .session, responses: ["204": answer("Logged out")])],
            "/v1/me": ["get": operation("The session's user", security: .session, responses: [
                "200": answer("The user", object(["user": ref("User")], required: ["user"])),
            ])],
            "/v1/auth/password": ["post": operation(
                "Change your password (the current one required); every other session ends", security: .session, body: bodies["POST /v1/auth/password"],
                responses: [
                    "200": answer("Changed; how many other sessions ended", ref("Ended")),
                    "403": problem("The current password is wrong", ["forbidden"]),
                    "429": tooManyAttempts("Too many wrong passwords for this account from this address (counted with failed logins); `Retry-After` says when"),
                    "503": unavailable((description: "more password hashing is queued than the server takes at once", types: ["server-busy"])),
                ])],
            "/v1/sessions": ["get": operation("Your live sessions, newest first (never a token)", security: .session, responses: [
                "200": answer("Sessions", object(["sessions": ["type": "array", "items": ref("SessionInfo")]], required: ["sessions"])),
            ])],
            "/v1/sessions/{session}": ["delete": operation(
                "End one of your sessions", security: .session, parameters: [pathParameter("session", "The session's id")], responses: [
                    "204": answer("Ended"), "404": problem("No such session among yours", ["not-found"]),
                ])],
            "/v1/auth/logout-others": ["post": operation("End every session of yours but this one", security: .session, responses: [
                "200": answer("How many ended", ref("Ended")),
            ])],
            "/v1/teams": [
                "post": operation("Create a team; you become its owner", security: .session, body: bodies["POST /v1/teams"], idempotent: true, responses: [
                    "201": answer("Created", object(["team": ref("Team")], required: ["team"])),
                ]),
                "get": operation("Your teams", security: .session, responses: [
                    "200": answer("Teams with your role", object(["teams": ["type": "array", "items": ref("Team")]], required: ["teams"])),
                ]),
            ],
            "/v1/teams/{team}/members": [
                "get": operation(
                    "The team's members and their roles (any member)", security: .session, parameters: [pathParameter("team", "The team's id")],
                    responses: [
                        "200": answer("Members, oldest first", object(["members": ["type": "array", "items": ref("TeamMember")]], required: ["members"])),
                        "404": problem("No such team among yours", ["not-found"]),
                    ]),
            ],
            "/v1/teams/{team}/invitations": [
                "post": operation(
                    "Invite an address into the team (owners and admins; only owners invite owners); the same answer whether it has an account. Inviting it again renews the invitation",
                    security: .session, body: bodies["POST /v1/teams/{team}/invitations"],
                    parameters: [pathParameter("team", "The team's id")], idempotent: true, responses: [
                        "201": answer("Invited; a mail is on its way", object(["invitation": ref("Invitation")], required: ["invitation"])),
                        "403": problem("Your role cannot invite (or cannot give that role)", ["forbidden"]),
                        "404": problem("No such team among yours", ["not-found"]),
                        "409": problem(
                            "The address is already a member; or an Idempotency-Key conflict",
                            ["conflict", "idempotency-key-reused", "idempotency-request-in-progress"]),
                    ]),
                "get": operation(
                    "The team's pending invitations (owners and admins)", security: .session, parameters: [pathParameter("team", "The team's id")],
                    responses: [
                        "200": answer("Pending invitations, oldest first", invitationList),
                        "403": problem("Your role cannot see invitations", ["forbidden"]), "404": problem("No such team among yours", ["not-found"]),
                    ]),
            ],
            "/v1/teams/{team}/invitations/{invitation}": ["delete": operation(
                "Withdraw a pending invitation (owners and admins)", security: .session,
                parameters: [pathParameter("team", "The team's id"), pathParameter("invitation", "The invitation's id")], responses: [
                    "204": answer("Withdrawn"), "403": problem("Your role cannot withdraw invitations", ["forbidden"]),
                    "404": problem("No such team among yours, or no such pending invitation", ["not-found"]),
                ])],
            "/v1/invitations": ["get": operation(
                "Pending invitations to your address", security: .session, responses: ["200": answer("Pending invitations, oldest first", invitationList)])],
            "/v1/invitations/{invitation}/accept": ["post": operation(
                "Accept an invitation to your address: you join the team with its role", security: .session,
                parameters: [pathParameter("invitation", "The invitation's id")], idempotent: true, responses: [
                    "200": answer("Joined", object(["team": ref("Team")], required: ["team"])),
                    "403": problem("The invitation lapsed: its inviter can no longer give that role", ["forbidden"]),
                    "404": problem("No such pending invitation to your address", ["not-found"]),
                    "409": problem("An Idempotency-Key conflict", ["idempotency-key-reused", "idempotency-request-in-progress"]),
                ])],
            "/v1/invitations/{invitation}": ["delete": operation(
                "Decline an invitation to your address", security: .session, parameters: [pathParameter("invitation", "The invitation's id")],
                responses: ["204": answer("Declined"), "404": problem("No such pending invitation to your address", ["not-found"])])],
            "/v1/teams/{team}/members/{user}": ["delete": operation(
                "Remove a member (owners and admins), or leave", security: .session,
                parameters: [pathParameter("team", "The team's id"), pathParameter("user", "The member's user id")], responses: [
                    "204": answer("Removed"), "403": problem("Your role cannot remove members", ["forbidden"]), "404": problem("No such team or member", ["not-found"]),
                    "409": problem("The last owner cannot leave", ["conflict"]),
                ])],
            "/v1/api-keys": [
                "post": operation("Create an API key (shown once)", security: .session, body: bodies["POST /v1/api-keys"], idempotent: true, responses: [
                    "201": answer("Created", ref("CreatedAPIKey")), "403": problem("Only a team's owners and admins create its keys", ["forbidden"]),
                    "404": problem("No such team among yours", ["not-found"]),
                ]),
                "get": operation("Your API keys (never the key itself)", security: .session, responses: [
                    "200": answer("Keys", object(["api_keys": ["type": "array", "items": ref("APIKey")]], required: ["api_keys"])),
                ]),
            ],
            "/v1/api-keys/{key}": ["delete": operation(
                "Revoke a key at once", security: .session, parameters: [pathParameter("key", "The key's id")], responses: [
                    "204": answer("Revoked"), "404": problem("No such key among yours", ["not-found"]),
                ])],
            "/v1/admin/grants": ["post": operation(
                "Grant credits to a user's or a team's account (admins, and service keys with grants:write)", security: .adminOrService, scope: .grantsWrite,
                body: bodies["POST /v1/admin/grants"], idempotent: true,
                responses: [
                    "201": answer("Granted", ref("Grant")), "403": problem("Only admins and service keys with grants:write grant credits", ["forbidden"]),
                    "404": problem("No such user or team", ["not-found"]),
                ])],
            "/v1/service-keys": [
                "post": operation(
                    "Create a service key for the product's backend (admins); the key is shown once", security: .session,
                    body: bodies["POST /v1/service-keys"], idempotent: true, responses: [
                        "201": answer("Created", ref("CreatedServiceKey")), "403": problem("Only admins manage service keys", ["forbidden"]),
                    ]),
                "get": operation("Every service key, revoked ones too (admins; never the key itself)", security: .session, responses: [
                    "200": answer("Keys", object(["service_keys": ["type": "array", "items": ref("ServiceKey")]], required: ["service_keys"])),
                    "403": problem("Only admins manage service keys", ["forbidden"]),
                ]),
            ],
            "/v1/service-keys/{key}": ["delete": operation(
                "Revoke a service key at once: its next request is refused (admins)", security: .session, parameters: [pathParameter("key", "The service key's id")],
                idempotent: true, responses: [
                    "204": answer("Revoked"), "403": problem("Only admins manage service keys", ["forbidden"]), "404": problem("No such service key", ["not-found"]),
                ])],
            "/v1/customers/{customer}": [
                "put": operation(
                    "Create a customer by the product's own id, or get the one it names already (unchanged): a user (email) or a team (name, optionally an owner). accounts:write",
                    security: .service, scope: .accountsWrite, body: bodies["PUT /v1/customers/{customer}"], parameters: [customerID], responses: [
                        "200": answer("It existed: as stored", object(["customer": ref("Customer")], required: ["customer"])),
                        "201": answer("Created", object(["customer": ref("Customer")], required: ["customer"])),
                        "403": scopeMissing, "404": problem("Not an external id, or the owner is no user customer", ["not-found"]),
                        "409": problem("The id names a customer of the other kind, or another user has the email", ["conflict"]),
                    ]),
                "get": operation("A customer (accounts:read)", security: .service, scope: .accountsRead, parameters: [customerID], responses: [
                    "200": answer("The customer", object(["customer": ref("Customer")], required: ["customer"])),
                    "403": scopeMissing, "404": noCustomer,
                ]),
            ],
            "/v1/customers/{customer}/balance": ["get": operation(
                "A customer's balance, held and available credits and open grants (accounts:read)", security: .service, scope: .accountsRead, parameters: [customerID], responses: [
                    "200": answer("The balance", ref("Balance")), "403": scopeMissing, "404": noCustomer,
                ])],
            "/v1/customers/{customer}/transactions": ["get": operation(
                "A customer's ledger, newest first (accounts:read)", security: .service, scope: .accountsRead, parameters: [customerID] + pageParameters(defaultLimit: 20), responses: [
                    "200": answer("A page", ref("LedgerPage")), "400": problem("A bad limit or cursor", ["invalid-input"]), "403": scopeMissing, "404": noCustomer,
                ])],
            "/v1/customers/{customer}/grants": ["post": operation(
                "Grant credits to a customer, e.g. after a payment (grants:write); send the payment's id as Idempotency-Key", security: .service, scope: .grantsWrite,
                body: bodies["POST /v1/customers/{customer}/grants"], parameters: [customerID], idempotent: true, responses: [
                    "201": answer("Granted", ref("Grant")), "403": scopeMissing, "404": noCustomer,
                ])],
            "/v1/customers/{customer}/api-keys": [
                "post": operation(
                    "Create an API key spending from the customer's account (keys:write); it acts for the user, or for the team's first owner",
                    security: .service, scope: .keysWrite, body: bodies["POST /v1/customers/{customer}/api-keys"], parameters: [customerID], idempotent: true, responses: [
                        "201": answer("Created", ref("CreatedAPIKey")), "403": scopeMissing, "404": noCustomer,
                        "409": problem("A team customer without an owner; or an Idempotency-Key conflict", ["conflict", "idempotency-key-reused", "idempotency-request-in-progress"]),
                    ]),
                "get": operation("The API keys spending from the customer's account (accounts:read; never the key itself)", security: .service, scope: .accountsRead, parameters: [customerID], responses: [
                    "200": answer("Keys", object(["api_keys": ["type": "array", "items": ref("APIKey")]], required: ["api_keys"])),
                    "403": scopeMissing, "404": noCustomer,
                ]),
            ],
            "/v1/customers/{customer}/alerts": [
                "post": operation(
                    "Add a balance alert: balance.threshold_crossed when the available credits fall below `threshold` credits or `percent` of the newest grant, decided in the spend's own transaction; balance.recovered when they are back (accounts:write)",
                    security: .service, scope: .accountsWrite, body: bodies["POST /v1/customers/{customer}/alerts"], parameters: [customerID], idempotent: true,
                    responses: ["201": answer("Added", object(["alert": ref("BalanceAlert")], required: ["alert"])), "403": scopeMissing, "404": noCustomer]),
                "get": operation("The customer's balance alerts (accounts:read)", security: .service, scope: .accountsRead, parameters: [customerID], responses: [
                    "200": answer("Alerts", object(["alerts": ["type": "array", "items": ref("BalanceAlert")]], required: ["alerts"])),
                    "403": scopeMissing, "404": noCustomer,
                ]),
            ],
            "/v1/customers/{customer}/alerts/{alert}": ["delete": operation(
                "Remove a balance alert (accounts:write)", security: .service, scope: .accountsWrite,
                parameters: [customerID, pathParameter("alert", "The alert's id")], idempotent: true, responses: [
                    "204": answer("Removed"), "403": scopeMissing, "404": problem("No such customer, or no such alert on its account", ["not-found"]),
                ])],
            "/v1/customers/{customer}/topup-rules": [
                "post": operation(
                    "Add an automatic top-up: when the available credits fall below `below`, topup.requested (you charge, then grant with the top-up's id as Idempotency-Key) or a grant at once; once per crossing, decided in the spend's own transaction, at most max_per_day a day (grants:write)",
                    security: .service, scope: .grantsWrite, body: bodies["POST /v1/customers/{customer}/topup-rules"], parameters: [customerID], idempotent: true,
                    responses: ["201": answer("Added (an account already below the line is topped up now)", object(["topup_rule": ref("TopUpRule")], required: ["topup_rule"])), "403": scopeMissing, "404": noCustomer]),
                "get": operation("The customer's top-up rules (accounts:read)", security: .service, scope: .accountsRead, parameters: [customerID], responses: [
                    "200": answer("Rules", object(["topup_rules": ["type": "array", "items": ref("TopUpRule")]], required: ["topup_rules"])),
                    "403": scopeMissing, "404": noCustomer,
                ]),
            ],
            "/v1/customers/{customer}/topup-rules/{rule}": ["delete": operation(
                "Remove a top-up rule; its top-ups stay listed (grants:write)", security: .service, scope: .grantsWrite,
                parameters: [customerID, pathParameter("rule", "The rule's id")], idempotent: true, responses: [
                    "204": answer("Removed"), "403": scopeMissing, "404": problem("No such customer, or no such rule on its account", ["not-found"]),
                ])],
            "/v1/customers/{customer}/topups": ["get": operation(
                "What the customer's top-up rules did, newest first (the last 50; accounts:read)", security: .service, scope: .accountsRead, parameters: [customerID], responses: [
                    "200": answer("Top-ups", object(["topups": ["type": "array", "items": ref("TopUp")]], required: ["topups"])),
                    "403": scopeMissing, "404": noCustomer,
                ])],
            "/v1/customers/{customer}/recurring-grants": [
                "post": operation(
                    "Grant credits every day, week or month, each period once whichever server issues it, missed periods caught up; optionally expiring and with a rollover cap (grants:write)",
                    security: .service, scope: .grantsWrite, body: bodies["POST /v1/customers/{customer}/recurring-grants"], parameters: [customerID], idempotent: true,
                    responses: ["201": answer("Scheduled (the current period issued when it has started)", object(["recurring_grant": ref("RecurringGrant")], required: ["recurring_grant"])), "403": scopeMissing, "404": noCustomer]),
                "get": operation("The customer's recurring grants, ended ones too (accounts:read)", security: .service, scope: .accountsRead, parameters: [customerID], responses: [
                    "200": answer("Recurring grants", object(["recurring_grants": ["type": "array", "items": ref("RecurringGrant")]], required: ["recurring_grants"])),
                    "403": scopeMissing, "404": noCustomer,
                ]),
            ],
            "/v1/customers/{customer}/recurring-grants/{schedule}": ["delete": operation(
                "End a recurring grant: nothing more is issued; what it granted stays (grants:write)", security: .service, scope: .grantsWrite,
                parameters: [customerID, pathParameter("schedule", "The recurring grant's id")], idempotent: true, responses: [
                    "204": answer("Ended"), "403": scopeMissing, "404": problem("No such customer, or no such recurring grant on its account", ["not-found"]),
                ])],
            "/v1/webhooks": [
                "post": operation(
                    "Add a webhook endpoint, for every account's events or one customer's, for all event types or some; the signing secret (whsec_…) is shown once (admins, webhooks:write)",
                    security: .adminOrService, scope: .webhooksWrite, body: bodies["POST /v1/webhooks"], idempotent: true, responses: [
                        "201": answer("Added", ref("WebhookEndpointWithSecret")), "403": webhooksForbidden,
                        "404": problem("No such customer", ["not-found"]),
                    ]),
                "get": operation("Every webhook endpoint (never a secret)", security: .adminOrService, scope: .webhooksWrite, responses: [
                    "200": answer("Endpoints", object(["webhooks": ["type": "array", "items": ref("WebhookEndpoint")]], required: ["webhooks"])),
                    "403": webhooksForbidden,
                ]),
            ],
            "/v1/webhooks/{webhook}": ["delete": operation(
                "Remove an endpoint and its deliveries", security: .adminOrService, scope: .webhooksWrite, parameters: [webhookID], idempotent: true,
                responses: ["204": answer("Removed"), "403": webhooksForbidden, "404": noWebhook])],
            "/v1/webhooks/{webhook}/rotate-secret": ["post": operation(
                "A new signing secret, shown once; the previous one keeps signing too (a second signature) for 24 hours", security: .adminOrService,
                scope: .webhooksWrite, parameters: [webhookID], idempotent: true,
                responses: ["200": answer("Rotated", ref("WebhookEndpointWithSecret")), "403": webhooksForbidden, "404": noWebhook])],
            "/v1/webhooks/{webhook}/enable": ["post": operation(
                "Enable an endpoint disabled by a 410 answer; its pending deliveries go out again", security: .adminOrService, scope: .webhooksWrite,
                parameters: [webhookID], idempotent: true,
                responses: ["200": answer("Enabled", object(["webhook": ref("WebhookEndpoint")], required: ["webhook"])), "403": webhooksForbidden, "404": noWebhook])],
            "/v1/webhooks/{webhook}/deliveries": ["get": operation(
                "The endpoint's deliveries, newest first, each with every attempt (status, duration, error)", security: .adminOrService, scope: .webhooksWrite,
                parameters: [webhookID] + pageParameters(defaultLimit: 20), responses: [
                    "200": answer("A page", ref("WebhookDeliveryPage")), "400": problem("A bad limit or cursor", ["invalid-input"]),
                    "403": webhooksForbidden, "404": noWebhook,
                ])],
            "/v1/webhooks/{webhook}/deliveries/{delivery}/redeliver": ["post": operation(
                "Send a delivery again now, with the same webhook-id (a failed one too)", security: .adminOrService, scope: .webhooksWrite,
                parameters: [webhookID, ["name": "delivery", "in": "path", "required": true, "description": "The delivery's id", "schema": ["type": "integer", "format": "int64", "minimum": 1]]],
                idempotent: true, responses: [
                    "202": answer("Due now", object(["detail": text], required: ["detail"])), "403": webhooksForbidden,
                    "404": problem("No such delivery to this endpoint", ["not-found"]),
                ])],
            "/v1/customers/{customer}/api-keys/{key}": ["delete": operation(
                "Revoke at once a key spending from the customer's account (keys:write)", security: .service, scope: .keysWrite,
                parameters: [customerID, pathParameter("key", "The key's id")], idempotent: true, responses: [
                    "204": answer("Revoked"), "403": scopeMissing, "404": problem("No such customer, or no such key on its account", ["not-found"]),
                ])],
            "/v1/credits/balance": ["get": operation(
                "The account's balance, held and available credits and open grants", security: .either, parameters: [teamQuery], responses: [
                    "200": answer("The balance", ref("Balance")), "400": problem("A malformed team_id, or team_id with an API key (a key reads only the account it spends from)", ["invalid-input"]),
                    "404": problem("No such team among yours", ["not-found"]),
                ])],
            "/v1/credits/burndown": ["get": operation(
                "The balance at the end of each of the last 30 UTC days, the spend rate (the last seven days' average) and the projected moment the available credits reach zero (grants expiring on the way and top-up rules counted); and the spend per key per day, the top five named (only keys the caller may list)",
                security: .either, parameters: [teamQuery], responses: [
                    "200": answer("The burn-down", object(["burndown": ref("BurnDown"), "spend_by_key": ref("KeySpend")], required: ["burndown", "spend_by_key"])),
                    "400": problem("A malformed team_id, or team_id with an API key", ["invalid-input"]),
                    "404": problem("No such team among yours", ["not-found"]),
                ])],
            "/v1/admin/audit": ["get": operation(
                "What admins and operators did (grants), newest first (admins)", security: .session,
                parameters: pageParameters(defaultLimit: 50), responses: [
                    "200": answer("A page", ref("AdminAuditPage")), "400": problem("A bad limit or cursor", ["invalid-input"]),
                    "403": problem("Only admins read the audit log", ["forbidden"]),
                ])],
            "/v1/credits/transactions": ["get": operation(
                "The account's ledger, newest first; optionally only one API key's entries, or one kind's", security: .either,
                parameters: [teamQuery] + pageParameters(defaultLimit: 20) + [
                    queryParameter("api_key_id", "Only this key's entries", id),
                    queryParameter("kind", "Only entries of this kind", ["type": "string", "enum": .array(LedgerEntry.kinds.map { JSONValue($0) })]),
                ], responses: [
                    "200": answer("A page", ref("LedgerPage")), "400": problem("A bad limit or cursor, or team_id with an API key", ["invalid-input"]),
                    "404": problem("No such team among yours", ["not-found"]),
                ])],
            "/v1/credits/consume": ["post": operation(
                "Spend credits from the API key's account", security: .apiKey, body: bodies["POST /v1/credits/consume"], idempotent: true,
                responses: ["200": answer("Spent", ref("ConsumeResult")), "402": paymentRequired])],
            "/v1/credits/holds": ["post": operation(
                "Reserve credits (available drops until the hold is captured, released or expires)", security: .apiKey,
                body: bodies["POST /v1/credits/holds"], idempotent: true, responses: ["201": answer("Reserved", ref("Hold")), "402": paymentRequired])],
            "/v1/credits/holds/{hold}/capture": ["post": operation(
                "Spend up to the held amount; the rest returns (the key that placed it, or a session of the account's owner or a team's owners and admins)", security: .either, body: bodies["POST /v1/credits/holds/{hold}/capture"],
                parameters: [holdID], idempotent: true, responses: [
                    "200": answer("Captured", ref("Hold")), "404": problem("No such hold placed by this key, or on an account this session manages", ["not-found"]),
                    "409": problem("The hold is already captured, released or expired; or an Idempotency-Key conflict", ["conflict", "idempotency-key-reused", "idempotency-request-in-progress"]),
                ])],
            "/v1/credits/holds/{hold}/release": ["post": operation(
                "Return all of a hold (the key that placed it, or a session of the account's owner or a team's owners and admins)", security: .either, parameters: [holdID], idempotent: true, responses: [
                    "200": answer("Released", ref("Hold")), "404": problem("No such hold placed by this key, or on an account this session manages", ["not-found"]),
                    "409": problem("The hold is already captured, released or expired; or an Idempotency-Key conflict", ["conflict", "idempotency-key-reused", "idempotency-request-in-progress"]),
                ])],
        ]
    }
}
