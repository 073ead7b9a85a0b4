import Foundation
import Hummingbird
import HummingbirdTesting
import HTTPTypes
import PostgresNIO
import TallyCredits
import TallyPostgres
import Testing
@testable import TallyServer

/// Service keys: shown once, in the checksummed shape, every use in the admin audit log, revoked at once; and
/// every service route × every scope (the scopes from the API document, like the authorization matrix).
@Suite struct ServiceKeysTests {
    /// The scope each service route needs, as this test knows it: the document must say the same
    /// (`x-tally-scope`), and a key must pass with it and be refused (403) without it.
    static let scopes: [String: ServiceScope] = [
        "POST /v1/admin/grants": .grantsWrite,
        "PUT /v1/customers/{customer}": .accountsWrite,
        "GET /v1/customers/{customer}": .accountsRead,
        "GET /v1/customers/{customer}/balance": .accountsRead,
        "GET /v1/customers/{customer}/transactions": .accountsRead,
        "GET /v1/customers/{customer}/api-keys": .accountsRead,
        "POST /v1/customers/{customer}/grants": .grantsWrite,
        "POST /v1/customers/{customer}/api-keys": .keysWrite,
        "DELETE /v1/customers/{customer}/api-keys/{key}": .keysWrite,
        "POST /v1/customers/{customer}/alerts": .accountsWrite,
        "GET /v1/customers/{customer}/alerts": .accountsRead,
        "DELETE /v1/customers/{customer}/alerts/{alert}": .accountsWrite,
        "POST /v1/customers/{customer}/topup-rules": .grantsWrite,
        "GET /v1/customers/{customer}/topup-rules": .accountsRead,
        "DELETE /v1/customers/{customer}/topup-rules/{rule}": .grantsWrite,
        "GET /v1/customers/{customer}/topups": .accountsRead,
        "POST /v1/customers/{customer}/recurring-grants": .grantsWrite,
        "GET /v1/customers/{customer}/recurring-grants": .accountsRead,
        "DELETE /v1/customers/{customer}/recurring-grants/{schedule}": .grantsWrite,
        "POST /v1/webhooks": .webhooksWrite,
        "GET /v1/webhooks": .webhooksWrite,
        "DELETE /v1/webhooks/{webhook}": .webhooksWrite,
        "POST /v1/webhooks/{webhook}/rotate-secret": .webhooksWrite,
        "POST /v1/webhooks/{webhook}/enable": .webhooksWrite,
        "GET /v1/webhooks/{webhook}/deliveries": .webhooksWrite,
        "POST /v1/webhooks/{webhook}/deliveries/{delivery}/redeliver": .webhooksWrite,
    ]

    @Test func everyServiceRouteTimesEveryScope() async throws {
        try await withTallyServer { client, db in
            let admin = try await signup(client, "admin@example.com")
            try await withSingleConnection(db) { try await $0.execute("UPDATE users SET is_admin = true WHERE email = 'admin@example.com'") }
            let all = try await newServiceKey(client, admin, name: "all", scopes: ServiceScope.allCases.map(\.rawValue))
            #expect(try await call(client, "/v1/customers/acme", .put, all, ["kind": "user", "email": "acme@example.com"]).status == .created)
            let acme = try await scalarText(db, "SELECT id::text FROM users WHERE external_id = 'acme'")

            // The document's service routes and their scopes are this test's, no more and no fewer.
            let document = try JSONDecoder().decode(JSONValue.self, from: Data(buffer: try await call(client, "/openapi.json", .get, nil).body))
            var documented: [String: String] = [:]
            for (path, item) in document["paths"]?.objectValue ?? [:] {
                for (method, operation) in item.objectValue ?? [:] {
                    let security = operation["security"]?.arrayValue ?? []
                    guard security.contains(where: { $0["serviceKey"] != nil }) else { continue }
                    documented["\(method.uppercased()) \(path)"] = operation["x-tally-scope"]?.stringValue ?? "(none)"
                }
            }
            #expect(documented == Self.scopes.mapValues(\.rawValue), "the document's service routes and scopes: \(documented)")

            // An endpoint (at a documentation address: nothing is delivered) with one delivery, for the webhook routes.
            func webhook() async throws -> String {
                let made = try await call(client, "/v1/webhooks", .post, all, ["url": "http://203.0.113.7/hooks"])
                let id = try #require((object(made.body)["webhook"] as? [String: Any])?["id"] as? String, "\(String(buffer: made.body))")
                try await withSingleConnection(db) { connection in
                    try await connection.execute(PostgresQuery(unsafeSQL: """
                        SELECT tally_emit(a.id, 'balance.depleted', '{}') FROM user_credits a JOIN users u ON u.id = a.user_id WHERE u.external_id = 'acme'
                        """))
                    try await connection.execute(PostgresQuery(unsafeSQL: "UPDATE webhook_deliveries SET status = 'failed' WHERE endpoint_id = '\(id)'"))
                }
                return id
            }
            var made = 0
            func material(_ operation: String) async throws -> (path: String, body: [String: Any]?, success: Int) {
                made += 1
                switch operation {
                case "POST /v1/admin/grants": return ("/v1/admin/grants", ["user_id": acme, "amount": 1, "description": "scopes"], 201)
                case "PUT /v1/customers/{customer}": return ("/v1/customers/new-\(made)", ["kind": "user", "email": "new\(made)@example.com"], 201)
                case "GET /v1/customers/{customer}": return ("/v1/customers/acme", nil, 200)
                case "GET /v1/customers/{customer}/balance": return ("/v1/customers/acme/balance", nil, 200)
                case "GET /v1/customers/{customer}/transactions": return ("/v1/customers/acme/transactions", nil, 200)
                case "GET /v1/customers/{customer}/api-keys": return ("/v1/customers/acme/api-keys", nil, 200)
                case "POST /v1/customers/{customer}/grants": return ("/v1/customers/acme/grants", ["amount": 1, "description": "scopes"], 201)
                case "POST /v1/customers/{customer}/api-keys": return ("/v1/customers/acme/api-keys", ["name": "k\(made)"], 201)
                case "DELETE /v1/customers/{customer}/api-keys/{key}":
                    let key = try await call(client, "/v1/customers/acme/api-keys", .post, all, ["name": "to revoke \(made)"])
                    let id = try #require((object(key.body)["api_key"] as? [String: Any])?["id"] as? String, "\(String(buffer: key.body))")
                    return ("/v1/customers/acme/api-keys/\(id)", nil, 204)
                case "POST /v1/customers/{customer}/alerts": return ("/v1/customers/acme/alerts", ["threshold": 10], 201)
                case "GET /v1/customers/{customer}/alerts": return ("/v1/customers/acme/alerts", nil, 200)
                case "DELETE /v1/customers/{customer}/alerts/{alert}":
                    let alert = try await call(client, "/v1/customers/acme/alerts", .post, all, ["percent": 10])
                    let id = try #require((object(alert.body)["alert"] as? [String: Any])?["id"] as? String, "\(String(buffer: alert.body))")
                    return ("/v1/customers/acme/alerts/\(id)", nil, 204)
                case "POST /v1/customers/{customer}/topup-rules": return ("/v1/customers/acme/topup-rules", ["below": 1, "amount": 5], 201)
                case "GET /v1/customers/{customer}/topup-rules": return ("/v1/customers/acme/topup-rules", nil, 200)
                case "DELETE /v1/customers/{customer}/topup-rules/{rule}":
                    let rule = try await call(client, "/v1/customers/acme/topup-rules", .post, all, ["below": 1, "top_up_to": 5])
                    let id = try #require((object(rule.body)["topup_rule"] as? [String: Any])?["id"] as? String, "\(String(buffer: rule.body))")
                    return ("/v1/customers/acme/topup-rules/\(id)", nil, 204)
                case "GET /v1/customers/{customer}/topups": return ("/v1/customers/acme/topups", nil, 200)
                case "POST /v1/customers/{customer}/recurring-grants":
                    return ("/v1/customers/acme/recurring-grants", ["amount": 1, "every": "month", "description": "scopes"], 201)
                case "GET /v1/customers/{customer}/recurring-grants": return ("/v1/customers/acme/recurring-grants", nil, 200)
                case "DELETE /v1/customers/{customer}/recurring-grants/{schedule}":
                    let made = try await call(client, "/v1/customers/acme/recurring-grants", .post, all, ["amount": 1, "every": "day", "description": "to end"])
                    let id = try #require((object(made.body)["recurring_grant"] as? [String: Any])?["id"] as? String, "\(String(buffer: made.body))")
                    return ("/v1/customers/acme/recurring-grants/\(id)", nil, 204)
                case "POST /v1/webhooks": return ("/v1/webhooks", ["url": "http://203.0.113.7/hooks"], 201)
                case "GET /v1/webhooks": return ("/v1/webhooks", nil, 200)
                case "DELETE /v1/webhooks/{webhook}": return ("/v1/webhooks/\(try await webhook())", nil, 204)
                case "POST /v1/webhooks/{webhook}/rotate-secret": return ("/v1/webhooks/\(try await webhook())/rotate-secret", nil, 200)
                case "POST /v1/webhooks/{webhook}/enable": return ("/v1/webhooks/\(try await webhook())/enable", nil, 200)
                case "GET /v1/webhooks/{webhook}/deliveries": return ("/v1/webhooks/\(try await webhook())/deliveries", nil, 200)
                case "POST /v1/webhooks/{webhook}/deliveries/{delivery}/redeliver":
                    let id = try await webhook()
                    let delivery = try await scalarText(db, "SELECT d.id::text FROM webhook_deliveries d WHERE d.endpoint_id::text = \(id)")
                    return ("/v1/webhooks/\(id)/deliveries/\(delivery)/redeliver", nil, 202)
                default:
                    Issue.record("no material for \(operation)")
                    return ("/", nil, 0)
                }
            }

            // One key per scope, and the read-only key a dashboard would use.
            var cells = 0
            for held in ServiceScope.allCases {
                let key = try await newServiceKey(client, admin, name: "only \(held.rawValue)", scopes: [held.rawValue])
                for (operation, needed) in Self.scopes.sorted(by: { $0.key < $1.key }) {
                    let method = HTTPRequest.Method(String(operation.split(separator: " ")[0]))!
                    let cell = try await material(operation)
                    let answer = try await call(client, cell.path, method, key, cell.body)
                    let allowed = held == needed || (held == .accountsWrite && needed == .accountsRead)
                    let want = allowed ? cell.success : 403
                    #expect(Int(answer.status.code) == want, "\(operation) with \(held.rawValue): \(answer.status.code), want \(want): \(String(buffer: answer.body).prefix(200))")
                    if !allowed {
                        #expect(String(buffer: answer.body).contains(needed.rawValue), "the refusal names the scope: \(String(buffer: answer.body))")
                    }
                    cells += 1
                }
            }
            #expect(cells == ServiceScope.allCases.count * Self.scopes.count)
            let report = try await audit(db)
            #expect(report.ok, "\(report.failures)")
        }
    }

    @Test func shownOnceEveryUseAuditedRevokedAtOnce() async throws {
        try await withTallyServer { client, db in
            let admin = try await signup(client, "admin@example.com")
            try await withSingleConnection(db) { try await $0.execute("UPDATE users SET is_admin = true WHERE email = 'admin@example.com'") }
            let created = try await call(client, "/v1/service-keys", .post, admin.token, ["name": "billing backend", "scopes": ["accounts:write", "grants:write"]])
            #expect(created.status == .created)
            let body = object(created.body)
            let key = try #require(body["key"] as? String)
            let listed = try #require(body["service_key"] as? [String: Any])
            let id = try #require(listed["id"] as? String)
            #expect(key.range(of: "^tly_svc_[0-9A-Za-z]{49}$", options: .regularExpression) != nil, "\(key)")
            #expect(Token.mayBeGenuine(key, prefix: ServiceKeys.tokenPrefix))
            #expect(listed["scopes"] as? [String] == ["accounts:write", "grants:write"])
            #expect(listed["created_by"] as? String == admin.id && listed["created_by_name"] as? String == "admin admin@example.com")

            // Shown once: never stored, never listed.
            #expect(!(try await everyRowAsText(db)).contains(key))
            let list = try await call(client, "/v1/service-keys", .get, admin.token)
            #expect(!String(buffer: list.body).contains(key) && String(buffer: list.body).contains(String(key.prefix(14))))

            // A mistyped key is refused without a lookup; a read-only route needs a service key, not a session.
            var typo = Array(key)
            typo[20] = typo[20] == "a" ? "b" : "a"
            let mistyped = try await call(client, "/v1/customers/ada", .get, String(typo))
            #expect(mistyped.status == .unauthorized && String(buffer: mistyped.body).contains("checksum"))
            #expect(try await call(client, "/v1/customers/ada", .get, admin.token).status == .unauthorized)

            // The product's side: a customer by its own id, a grant after a payment (retried), a refused route.
            var uses = 0
            func use(_ path: String, _ method: HTTPRequest.Method, _ body: [String: Any]? = nil, idempotencyKey: String? = nil) async throws -> TestResponse {
                uses += 1
                var headers: HTTPFields = [.authorization: "Bearer \(key)"]
                if let idempotencyKey { headers[.idempotencyKey] = idempotencyKey }
                return try await client.execute(uri: path, method: method, headers: headers, body: body.map(json))
            }
            #expect(try await use("/v1/customers/ada", .put, ["kind": "user", "email": "ada@example.com", "name": "Ada"]).status == .created)
            let again = try await use("/v1/customers/ada", .put, ["kind": "user", "email": "ada@example.com"])
            #expect(again.status == .ok && (object(again.body)["customer"] as? [String: Any])?["name"] as? String == "Ada", "unchanged: \(String(buffer: again.body))")
            let paid = try await use("/v1/customers/ada/grants", .post, ["amount": 500, "description": "payment pi_1"], idempotencyKey: "pi_1")
            let retried = try await use("/v1/customers/ada/grants", .post, ["amount": 500, "description": "payment pi_1"], idempotencyKey: "pi_1")
            #expect(paid.status == .created && retried.status == .created && retried.headers[HTTPField.Name("Idempotent-Replayed")!] == "true")
            #expect(String(buffer: paid.body) == String(buffer: retried.body))
            let balance = try await use("/v1/customers/ada/balance", .get)
            #expect(object(balance.body)["available"] as? Int == 500, "one grant for the retried payment: \(String(buffer: balance.body))")
            let refused = try await use("/v1/customers/ada/api-keys", .post, ["name": "k"])
            #expect(refused.status == .forbidden && String(buffer: refused.body).contains("keys:write"))

            // Every use is in the admin audit log, with the request's id; the acts name the key as their actor.
            let logged = try await scalarText(db, "SELECT count(*)::text FROM admin_audit WHERE action = 'service-key.use' AND subject->>'service_key_id' = \(id) AND request_id IS NOT NULL")
            #expect(logged == "\(uses)", "\(logged) uses logged, \(uses) made")
            let actor = "service key billing backend (\(key.prefix(14))…)"
            #expect(try await scalarText(db, "SELECT string_agg(action, ',' ORDER BY id) FROM admin_audit WHERE actor = \(actor) AND action <> 'service-key.use'") == "customer.create,grant")
            let page = try await call(client, "/v1/admin/audit?limit=100", .get, admin.token)
            #expect(String(buffer: page.body).contains("service-key.use") && String(buffer: page.body).contains("/v1/customers/ada/grants"))
            #expect(try await scalarText(db, "SELECT (last_used_at IS NOT NULL)::text FROM service_keys WHERE id::text = \(id)") == "true")

            // Revoked: the very next request is refused, and the revocation is audited.
            #expect(try await call(client, "/v1/service-keys/\(id)", .delete, admin.token).status == .noContent)
            let after = try await call(client, "/v1/customers/ada", .get, key)
            #expect(after.status == .unauthorized && String(buffer: after.body).contains("unknown or revoked"))
            #expect(try await scalarText(db, "SELECT count(*)::text FROM admin_audit WHERE action = 'service-key.revoke' AND subject->>'service_key_id' = \(id)") == "1")
            let revokedListed = (object(try await call(client, "/v1/service-keys", .get, admin.token).body)["service_keys"] as? [[String: Any]] ?? [])
            #expect(revokedListed.first { $0["id"] as? String == id }?["revoked_at"] is String)

            // Bad input: an unknown scope, no scope, a scope twice (the document says each once).
            let unknown = try await call(client, "/v1/service-keys", .post, admin.token, ["name": "x", "scopes": ["everything"]])
            #expect(unknown.status == .badRequest && String(buffer: unknown.body).contains("grants:write"))
            #expect(try await call(client, "/v1/service-keys", .post, admin.token, ["name": "x", "scopes": [String]()]).status == .badRequest)
            let twice = try await call(client, "/v1/service-keys", .post, admin.token, ["name": "x", "scopes": ["keys:write", "accounts:read", "keys:write"]])
            #expect(twice.status == .badRequest && String(buffer: twice.body).contains("keys:write is given twice"), "\(String(buffer: twice.body))")
            #expect(try await scalarText(db, "SELECT count(*)::text FROM service_keys WHERE name = 'x'") == "0")
        }
    }
}
