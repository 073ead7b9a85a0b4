import Foundation
import Hummingbird
import HummingbirdTesting
import HTTPTypes
import PostgresNIO
import TallyCredits
import TallyPostgres
import Testing
@testable import TallyServer

/// Every operation of the API document × every kind of caller, with the status each must get. The rows are
/// checked against `/openapi.json`: an operation added to the document without a row here fails the test, as
/// does a row for an operation the document lacks. Each cell runs on fresh material (a new session for
/// session callers, a new member to remove, a new key to revoke, a new hold to settle), so no cell depends on
/// what another did. An unverified user has no way to a session; the one used here is written by hand, and it
/// must be worth exactly as much as none (its row is the anonymous one).
@Suite struct AuthorizationMatrixTests {
    enum Caller: String, CaseIterable {
        case anonymous, outsider, member, teamAdmin, owner, removedMember, siteAdmin, revokedKey, otherTeamKey, unverified
        /// A service key with every scope (ServiceScopeTests goes through the scopes one by one), and a revoked one.
        case serviceKey, revokedServiceKey
    }

    /// What a cell must answer: exactly this status.
    typealias Row = [Caller: Int]

    /// The material of one cell: its path, body and credential.
    struct Cell {
        var path: String
        var body: [String: Any]?
    }

    @Test func everyOperationTimesEveryCaller() async throws {
        // Each request from an address of its own (through a trusted proxy): sign-up and login throttling are
        // not what this test is about.
        try await withTallyServer(configure: { $0.trustedProxies = [AddressRange("127.0.0.1")!] }) { client, db in
            var sent = 0
            func call(_ client: some TestClientProtocol, _ uri: String, _ method: HTTPRequest.Method, _ token: String?, _ body: [String: Any]? = nil) async throws -> TestResponse {
                sent += 1
                var headers: HTTPFields = [HTTPField.Name("X-Forwarded-For")!: "10.\(sent / 65536 % 256).\(sent / 256 % 256).\(sent % 256)"]
                if let token { headers[.authorization] = "Bearer \(token)" }
                return try await client.execute(uri: uri, method: method, headers: headers, body: body.map(json))
            }
            let root = try await signup(client, "admin@example.com")
            try await withSingleConnection(db) { try await $0.execute("UPDATE users SET is_admin = true WHERE email = 'admin@example.com'") }
            let owner = try await signup(client, "owner@example.com")
            let teamAdmin = try await signup(client, "team-admin@example.com")
            let member = try await signup(client, "member@example.com")
            let removed = try await signup(client, "removed@example.com")
            let outsider = try await signup(client, "outsider@example.com")
            #expect(try await call(client, "/v1/auth/signup", .post, nil, ["email": "unverified@example.com", "password": "password123"]).status == .accepted)
            let unverifiedID = try await scalarText(db, "SELECT id::text FROM users WHERE email = 'unverified@example.com' AND email_verified_at IS NULL")
            func teamOf(_ token: String, _ name: String) async throws -> String {
                try #require((object(try await call(client, "/v1/teams", .post, token, ["name": name]).body)["team"] as? [String: Any])?["id"] as? String)
            }
            let team = try await teamOf(owner.token, "Core")
            try await addMember(client, team: team, by: owner, teamAdmin, role: "admin")
            try await addMember(client, team: team, by: owner, member)
            try await addMember(client, team: team, by: owner, removed, role: "admin")
            let side = try await teamOf(root.token, "Side")
            try await grant(client, root, team: team, 1_000_000)
            let revokedKey = try await newKey(client, removed, ["name": "removed's", "team_id": team])
            #expect(try await call(client, "/v1/teams/\(team)/members/\(removed.id)", .delete, owner.token).status == .noContent)
            let otherTeam = try await teamOf(outsider.token, "Elsewhere")
            try await grant(client, root, team: otherTeam, 1_000_000)
            let otherTeamKey = try await newKey(client, outsider, ["name": "elsewhere", "team_id": otherTeam])
            let teamKey = try await newKey(client, owner, ["name": "team", "team_id": team])
            let allScopes = ServiceScope.allCases.map(\.rawValue)
            let serviceKey = try await newServiceKey(client, root, name: "backend", scopes: allScopes)
            let revokedServiceKey = try await newServiceKey(client, root, name: "old backend", scopes: allScopes)
            let revokedServiceID = try await scalarText(db, "SELECT id::text FROM service_keys WHERE name = 'old backend'")
            #expect(try await call(client, "/v1/service-keys/\(revokedServiceID)", .delete, root.token).status == .noContent)
            // Customers for the /v1/customers rows: a user, and a team it owns.
            #expect(try await call(client, "/v1/customers/cus_user", .put, serviceKey, ["kind": "user", "email": "customer@example.com"]).status == .created)
            #expect(try await call(client, "/v1/customers/cus_team", .put, serviceKey, ["kind": "team", "name": "Customer team", "owner": "cus_user"]).status == .created)

            let emails: [Caller: String] = [
                .outsider: "outsider@example.com", .member: "member@example.com", .teamAdmin: "team-admin@example.com",
                .owner: "owner@example.com", .removedMember: "removed@example.com", .siteAdmin: "admin@example.com",
            ]
            var fresh = 0
            func uniqueEmail() -> String { fresh += 1; return "fresh\(fresh)@example.com" }
            func credential(_ caller: Caller) async throws -> String? {
                switch caller {
                case .anonymous: return nil
                case .unverified:
                    let token = Token.make(prefix: Auth.sessionTokenPrefix)
                    try await withSingleConnection(db) { connection in
                        try await connection.execute(PostgresQuery(unsafeSQL: """
                            INSERT INTO sessions (user_id, token_hash, expires_at)
                            VALUES ('\(unverifiedID)', '\(Auth.tokenHash(token))', now() + interval '1 day')
                            """))
                    }
                    return token
                case .revokedKey: return revokedKey
                case .otherTeamKey: return otherTeamKey
                case .serviceKey: return serviceKey
                case .revokedServiceKey: return revokedServiceKey
                default:
                    let email = try #require(emails[caller])
                    let response = try await call(client, "/v1/auth/login", .post, nil, ["email": email, "password": "password123"])
                    return try decode(SessionAnswer.self, response, "login \(email)").token
                }
            }
            // Material is made with sessions of its own: a cell may have ended every other session of its caller.
            func owners() async throws -> Member { Member(token: try #require(try await credential(.owner)), id: owner.id, email: owner.email) }
            // Invitations to the outsider's address come from a team of the site admin's, so accepting one
            // leaves the outsider outside the team the other rows are about.
            func invitationToOutsider() async throws -> String {
                let admin = try #require(try await credential(.siteAdmin))
                _ = try await call(client, "/v1/teams/\(side)/members/\(outsider.id)", .delete, admin)
                let invited = try await call(client, "/v1/teams/\(side)/invitations", .post, admin, ["email": "outsider@example.com"])
                return try #require((object(invited.body)["invitation"] as? [String: Any])?["id"] as? String, "\(String(buffer: invited.body))")
            }
            func hold() async throws -> String {
                try #require(object(try await call(client, "/v1/credits/holds", .post, teamKey, ["amount": 1]).body)["hold_id"] as? String)
            }

            // Statuses shared by many rows.
            let anyUser: Row = [
                .anonymous: 401, .outsider: 200, .member: 200, .teamAdmin: 200, .owner: 200, .removedMember: 200, .siteAdmin: 200, .revokedKey: 401,
                .otherTeamKey: 401, .serviceKey: 401, .revokedServiceKey: 401,
            ]
            let anyone: Row = Dictionary(uniqueKeysWithValues: Caller.allCases.map { ($0, 200) })
            func sessions(_ status: Int, except overrides: Row = [:]) -> Row {
                var row: Row = [.anonymous: 401, .revokedKey: 401, .otherTeamKey: 401, .serviceKey: 401, .revokedServiceKey: 401]
                for caller in [Caller.outsider, .member, .teamAdmin, .owner, .removedMember, .siteAdmin] { row[caller] = status }
                return row.merging(overrides) { $1 }
            }
            let managers = sessions(404, except: [.member: 403, .teamAdmin: 0, .owner: 0])
            let keysOnly: Row = sessions(401, except: [.otherTeamKey: 0])
            let servicesOnly: Row = sessions(401, except: [.serviceKey: 0])
            let adminsAndServices: Row = sessions(403, except: [.siteAdmin: 0, .serviceKey: 0])
            // An endpoint at a documentation address (nothing is delivered), made by the service key.
            func webhook() async throws -> String {
                let made = try await call(client, "/v1/webhooks", .post, serviceKey, ["url": "http://203.0.113.7/hooks"])
                return try #require((object(made.body)["webhook"] as? [String: Any])?["id"] as? String, "\(String(buffer: made.body))")
            }
            var fresh2 = 0
            func uniqueCustomer() -> String { fresh2 += 1; return "cus_fresh_\(fresh2)" }
            func customerKey() async throws -> String {
                let made = try await call(client, "/v1/customers/cus_team/api-keys", .post, serviceKey, ["name": "to revoke"])
                return try #require((object(made.body)["api_key"] as? [String: Any])?["id"] as? String, "\(String(buffer: made.body))")
            }

            // Each operation: how to make a cell's request, and the row (0: the operation's success status).
            let rows: [String: (make: () async throws -> Cell, success: Int, row: Row)] = [
                "GET /healthz": ({ Cell(path: "/healthz") }, 200, anyone),
                "GET /readyz": ({ Cell(path: "/readyz") }, 200, anyone),
                "GET /openapi.json": ({ Cell(path: "/openapi.json") }, 200, anyone),
                "POST /v1/auth/signup": ({ Cell(path: "/v1/auth/signup", body: ["email": uniqueEmail(), "password": "password123"]) }, 202,
                    anyone.mapValues { _ in 202 }),
                // Public: only the mailed token decides (a wrong one is a 400 for anyone; AuthTests and MailTests use real ones).
                "POST /v1/auth/verify-email": ({ Cell(path: "/v1/auth/verify-email", body: ["token": Token.make(prefix: "tly_verify_")]) }, 400,
                    anyone.mapValues { _ in 400 }),
                "POST /v1/auth/login": ({ Cell(path: "/v1/auth/login", body: ["email": "member@example.com", "password": "password123"]) }, 200, anyone),
                "POST /v1/auth/password-reset": ({ Cell(path: "/v1/auth/password-reset", body: ["email": "member@example.com"]) }, 202,
                    anyone.mapValues { _ in 202 }),
                // Public: only the mailed token decides (a wrong one is a 400 for anyone; MailTests use a real one).
                "POST /v1/auth/password-reset/confirm": ({ Cell(path: "/v1/auth/password-reset/confirm", body: ["token": "tly_reset_nothing", "new_password": "password123"]) }, 400,
                    anyone.mapValues { _ in 400 }),
                "POST /v1/auth/logout": ({ Cell(path: "/v1/auth/logout") }, 204, anyUser.mapValues { $0 == 200 ? 204 : $0 }),
                "POST /v1/auth/logout-others": ({ Cell(path: "/v1/auth/logout-others") }, 200, anyUser),
                "POST /v1/auth/password": ({ Cell(path: "/v1/auth/password", body: ["current_password": "password123", "new_password": "password123"]) }, 200, anyUser),
                "GET /v1/me": ({ Cell(path: "/v1/me") }, 200, anyUser),
                "GET /v1/sessions": ({ Cell(path: "/v1/sessions") }, 200, anyUser),
                "DELETE /v1/sessions/{session}": ({
                    // One of the owner's sessions: only the owner may end it.
                    let token = try #require(try await credential(.owner))
                    let listed = object(try await call(client, "/v1/sessions", .get, token).body)["sessions"] as? [[String: Any]] ?? []
                    let id = try #require(listed.first { $0["current"] as? Bool == true }?["id"] as? String)
                    return Cell(path: "/v1/sessions/\(id)")
                }, 204, sessions(404, except: [.owner: 0])),
                "POST /v1/teams": ({ Cell(path: "/v1/teams", body: ["name": "New"]) }, 201, anyUser.mapValues { $0 == 200 ? 201 : $0 }),
                "GET /v1/teams": ({ Cell(path: "/v1/teams") }, 200, anyUser),
                "GET /v1/teams/{team}/members": ({ Cell(path: "/v1/teams/\(team)/members") }, 200,
                    sessions(404, except: [.member: 0, .teamAdmin: 0, .owner: 0])),
                "POST /v1/teams/{team}/invitations": ({ Cell(path: "/v1/teams/\(team)/invitations", body: ["email": uniqueEmail()]) }, 201, managers),
                "GET /v1/teams/{team}/invitations": ({ Cell(path: "/v1/teams/\(team)/invitations") }, 200, managers),
                "DELETE /v1/teams/{team}/invitations/{invitation}": ({
                    let invited = try await call(client, "/v1/teams/\(team)/invitations", .post, try await owners().token, ["email": uniqueEmail()])
                    let id = try #require((object(invited.body)["invitation"] as? [String: Any])?["id"] as? String)
                    return Cell(path: "/v1/teams/\(team)/invitations/\(id)")
                }, 204, managers),
                "GET /v1/invitations": ({ Cell(path: "/v1/invitations") }, 200, anyUser),
                "POST /v1/invitations/{invitation}/accept": ({ Cell(path: "/v1/invitations/\(try await invitationToOutsider())/accept") }, 200,
                    sessions(404, except: [.outsider: 0])),
                "DELETE /v1/invitations/{invitation}": ({ Cell(path: "/v1/invitations/\(try await invitationToOutsider())") }, 204,
                    sessions(404, except: [.outsider: 0])),
                "DELETE /v1/teams/{team}/members/{user}": ({
                    let victim = try await signup(client, uniqueEmail())
                    try await addMember(client, team: team, by: try await owners(), victim)
                    return Cell(path: "/v1/teams/\(team)/members/\(victim.id)")
                }, 204, managers),
                "POST /v1/api-keys": ({ Cell(path: "/v1/api-keys", body: ["name": "k", "team_id": team]) }, 201, managers),
                "GET /v1/api-keys": ({ Cell(path: "/v1/api-keys") }, 200, anyUser),
                "DELETE /v1/api-keys/{key}": ({
                    let made = try await call(client, "/v1/api-keys", .post, try await owners().token, ["name": "to revoke", "team_id": team])
                    let id = try #require((object(made.body)["api_key"] as? [String: Any])?["id"] as? String)
                    return Cell(path: "/v1/api-keys/\(id)")
                }, 204, sessions(404, except: [.teamAdmin: 0, .owner: 0])),
                "POST /v1/admin/grants": ({ Cell(path: "/v1/admin/grants", body: ["team_id": team, "amount": 1, "description": "matrix"]) }, 201,
                    sessions(403, except: [.siteAdmin: 0, .serviceKey: 0])),
                "POST /v1/service-keys": ({ Cell(path: "/v1/service-keys", body: ["name": "k", "scopes": ["accounts:read"]]) }, 201,
                    sessions(403, except: [.siteAdmin: 0])),
                "GET /v1/service-keys": ({ Cell(path: "/v1/service-keys") }, 200, sessions(403, except: [.siteAdmin: 0])),
                "DELETE /v1/service-keys/{key}": ({
                    let made = try await call(client, "/v1/service-keys", .post, try #require(try await credential(.siteAdmin)), ["name": "to revoke", "scopes": ["accounts:read"]])
                    let id = try #require((object(made.body)["service_key"] as? [String: Any])?["id"] as? String)
                    return Cell(path: "/v1/service-keys/\(id)")
                }, 204, sessions(403, except: [.siteAdmin: 0])),
                "PUT /v1/customers/{customer}": ({ Cell(path: "/v1/customers/\(uniqueCustomer())", body: ["kind": "team", "name": "Fresh"]) }, 201, servicesOnly),
                "GET /v1/customers/{customer}": ({ Cell(path: "/v1/customers/cus_user") }, 200, servicesOnly),
                "GET /v1/customers/{customer}/balance": ({ Cell(path: "/v1/customers/cus_team/balance") }, 200, servicesOnly),
                "GET /v1/customers/{customer}/transactions": ({ Cell(path: "/v1/customers/cus_team/transactions") }, 200, servicesOnly),
                "POST /v1/customers/{customer}/grants": ({ Cell(path: "/v1/customers/cus_team/grants", body: ["amount": 5, "description": "matrix"]) }, 201, servicesOnly),
                "GET /v1/customers/{customer}/api-keys": ({ Cell(path: "/v1/customers/cus_team/api-keys") }, 200, servicesOnly),
                "POST /v1/customers/{customer}/api-keys": ({ Cell(path: "/v1/customers/cus_team/api-keys", body: ["name": "k"]) }, 201, servicesOnly),
                "DELETE /v1/customers/{customer}/api-keys/{key}": ({ Cell(path: "/v1/customers/cus_team/api-keys/\(try await customerKey())") }, 204, servicesOnly),
                "POST /v1/customers/{customer}/alerts": ({ Cell(path: "/v1/customers/cus_team/alerts", body: ["threshold": 10]) }, 201, servicesOnly),
                "GET /v1/customers/{customer}/alerts": ({ Cell(path: "/v1/customers/cus_team/alerts") }, 200, servicesOnly),
                "DELETE /v1/customers/{customer}/alerts/{alert}": ({
                    let made = try await call(client, "/v1/customers/cus_team/alerts", .post, serviceKey, ["percent": 5])
                    return Cell(path: "/v1/customers/cus_team/alerts/\(try #require((object(made.body)["alert"] as? [String: Any])?["id"] as? String))")
                }, 204, servicesOnly),
                "POST /v1/customers/{customer}/topup-rules": ({ Cell(path: "/v1/customers/cus_team/topup-rules", body: ["below": 1, "amount": 5]) }, 201, servicesOnly),
                "GET /v1/customers/{customer}/topup-rules": ({ Cell(path: "/v1/customers/cus_team/topup-rules") }, 200, servicesOnly),
                "DELETE /v1/customers/{customer}/topup-rules/{rule}": ({
                    let made = try await call(client, "/v1/customers/cus_team/topup-rules", .post, serviceKey, ["below": 1, "top_up_to": 5])
                    return Cell(path: "/v1/customers/cus_team/topup-rules/\(try #require((object(made.body)["topup_rule"] as? [String: Any])?["id"] as? String))")
                }, 204, servicesOnly),
                "GET /v1/customers/{customer}/topups": ({ Cell(path: "/v1/customers/cus_team/topups") }, 200, servicesOnly),
                "POST /v1/customers/{customer}/recurring-grants": ({
                    Cell(path: "/v1/customers/cus_team/recurring-grants", body: ["amount": 5, "every": "month", "description": "matrix"])
                }, 201, servicesOnly),
                "GET /v1/customers/{customer}/recurring-grants": ({ Cell(path: "/v1/customers/cus_team/recurring-grants") }, 200, servicesOnly),
                "DELETE /v1/customers/{customer}/recurring-grants/{schedule}": ({
                    let made = try await call(client, "/v1/customers/cus_team/recurring-grants", .post, serviceKey, ["amount": 1, "every": "week", "description": "to end"])
                    return Cell(path: "/v1/customers/cus_team/recurring-grants/\(try #require((object(made.body)["recurring_grant"] as? [String: Any])?["id"] as? String))")
                }, 204, servicesOnly),
                "POST /v1/webhooks": ({ Cell(path: "/v1/webhooks", body: ["url": "http://203.0.113.7/hooks"]) }, 201, adminsAndServices),
                "GET /v1/webhooks": ({ Cell(path: "/v1/webhooks") }, 200, adminsAndServices),
                "DELETE /v1/webhooks/{webhook}": ({ Cell(path: "/v1/webhooks/\(try await webhook())") }, 204, adminsAndServices),
                "POST /v1/webhooks/{webhook}/rotate-secret": ({ Cell(path: "/v1/webhooks/\(try await webhook())/rotate-secret") }, 200, adminsAndServices),
                "POST /v1/webhooks/{webhook}/enable": ({ Cell(path: "/v1/webhooks/\(try await webhook())/enable") }, 200, adminsAndServices),
                "GET /v1/webhooks/{webhook}/deliveries": ({ Cell(path: "/v1/webhooks/\(try await webhook())/deliveries") }, 200, adminsAndServices),
                "POST /v1/webhooks/{webhook}/deliveries/{delivery}/redeliver": ({
                    let id = try await webhook()
                    try await withSingleConnection(db) { connection in
                        try await connection.execute(PostgresQuery(unsafeSQL: """
                            SELECT tally_emit(a.id, 'balance.depleted', '{}') FROM user_credits a WHERE a.team_id = '\(team)'
                            """))
                        try await connection.execute(PostgresQuery(unsafeSQL: "UPDATE webhook_deliveries SET status = 'failed' WHERE endpoint_id = '\(id)'"))
                    }
                    let delivery = try await scalarText(db, "SELECT max(d.id)::text FROM webhook_deliveries d WHERE d.endpoint_id::text = \(id)")
                    return Cell(path: "/v1/webhooks/\(id)/deliveries/\(delivery)/redeliver")
                }, 202, adminsAndServices),
                "GET /v1/admin/audit": ({ Cell(path: "/v1/admin/audit") }, 200, sessions(403, except: [.siteAdmin: 0])),
                "GET /v1/credits/balance": ({ Cell(path: "/v1/credits/balance?team_id=\(team)") }, 200,
                    sessions(404, except: [.member: 0, .teamAdmin: 0, .owner: 0, .otherTeamKey: 400])),
                "GET /v1/credits/transactions": ({ Cell(path: "/v1/credits/transactions?team_id=\(team)") }, 200,
                    sessions(404, except: [.member: 0, .teamAdmin: 0, .owner: 0, .otherTeamKey: 400])),
                "GET /v1/credits/burndown": ({ Cell(path: "/v1/credits/burndown?team_id=\(team)") }, 200,
                    sessions(404, except: [.member: 0, .teamAdmin: 0, .owner: 0, .otherTeamKey: 400])),
                "POST /v1/credits/consume": ({ Cell(path: "/v1/credits/consume", body: ["amount": 1]) }, 200, keysOnly),
                "POST /v1/credits/holds": ({ Cell(path: "/v1/credits/holds", body: ["amount": 1]) }, 201, keysOnly),
                "POST /v1/credits/holds/{hold}/capture": ({ Cell(path: "/v1/credits/holds/\(try await hold())/capture") }, 200,
                    sessions(404, except: [.teamAdmin: 0, .owner: 0, .otherTeamKey: 404])),
                "POST /v1/credits/holds/{hold}/release": ({ Cell(path: "/v1/credits/holds/\(try await hold())/release") }, 200,
                    sessions(404, except: [.teamAdmin: 0, .owner: 0, .otherTeamKey: 404])),
            ]

            // The rows are the document's operations, no more and no fewer.
            let document = try JSONDecoder().decode(JSONValue.self, from: Data(buffer: try await call(client, "/openapi.json", .get, nil).body))
            var documented: Set<String> = []
            for (path, item) in document["paths"]?.objectValue ?? [:] {
                for method in (item.objectValue ?? [:]).keys { documented.insert("\(method.uppercased()) \(path)") }
            }
            #expect(documented.subtracting(rows.keys).isEmpty, "operations without a row: \(documented.subtracting(rows.keys).sorted())")
            #expect(Set(rows.keys).subtracting(documented).isEmpty, "rows for no operation: \(Set(rows.keys).subtracting(documented).sorted())")

            var cells = 0
            for (operation, entry) in rows.sorted(by: { $0.key < $1.key }) {
                let method = HTTPRequest.Method(String(operation.split(separator: " ")[0]))!
                for caller in Caller.allCases {
                    let expected = try #require(
                        caller == .unverified ? entry.row[.anonymous] : entry.row[caller], "\(operation) has no cell for \(caller)")
                    let cell = try await entry.make()
                    let token = try await credential(caller)
                    let answer = try await call(client, cell.path, method, token, cell.body)
                    let want = expected == 0 ? entry.success : expected
                    #expect(Int(answer.status.code) == want, "\(operation) as \(caller): \(answer.status.code), want \(want): \(String(buffer: answer.body).prefix(200))")
                    cells += 1
                }
            }
            #expect(cells == rows.count * Caller.allCases.count)
            let report = try await audit(db)
            #expect(report.ok, "\(report.failures)")
        }
    }
}
