import Foundation
import Hummingbird
import HummingbirdTesting
import HTTPTypes
import PostgresNIO
import TallyCredits
import TallyPostgres
import Testing
@testable import TallyServer

/// The product's own ids: customers created idempotently (create-or-get, also when calls race), addressed by
/// those ids, never one id for a user and a team, and the product's customer spending with a key it was given.
@Suite struct CustomersTests {
    func backend(_ client: some TestClientProtocol, _ db: ConnectionSettings) async throws -> String {
        let admin = try await signup(client, "admin@example.com")
        try await withSingleConnection(db) { try await $0.execute("UPDATE users SET is_admin = true WHERE email = 'admin@example.com'") }
        return try await newServiceKey(client, admin, scopes: ServiceScope.allCases.map(\.rawValue))
    }

    @Test func racingCreatesMakeOneCustomer() async throws {
        try await withTallyServer { client, db in
            let key = try await backend(client, db)
            let port = try #require(client.port)
            // Twenty requests at once, each on its own connection, for one new id: one creates, the rest get it.
            let answers = try await withThrowingTaskGroup(of: Answer.self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        try await send(port: port, "/v1/customers/user_2NNEqL2", "PUT", token: key, body: ["kind": "user", "email": "grace@example.com"])
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(answers.filter { $0.status == 201 }.count == 1, "\(answers.map(\.status))")
            #expect(answers.filter { $0.status == 200 }.count == 19, "\(answers.map(\.status))")
            let ids = Set(answers.compactMap { ($0.body["customer"] as? [String: Any])?["id"] as? String })
            #expect(ids.count == 1, "\(ids)")
            #expect(try await scalarText(db, "SELECT count(*)::text FROM users WHERE external_id = 'user_2NNEqL2'") == "1")
            #expect(try await scalarText(db, "SELECT count(*)::text FROM admin_audit WHERE action = 'customer.create'") == "1")
        }
    }

    @Test func oneIdNamesOneCustomer() async throws {
        try await withTallyServer { client, db in
            let key = try await backend(client, db)
            #expect(try await call(client, "/v1/customers/org_1", .put, key, ["kind": "team", "name": "Acme"]).status == .created)
            let asUser = try await call(client, "/v1/customers/org_1", .put, key, ["kind": "user", "email": "acme@example.com"])
            #expect(asUser.status == .conflict && String(buffer: asUser.body).contains("is a team, not a user"), "\(String(buffer: asUser.body))")
            // The database keeps a user's and a team's ids apart for every writer, not only for Tally's API.
            let refused = try await withSingleConnection(db) { connection -> String? in
                do {
                    try await connection.execute("INSERT INTO users (email, password_hash, external_id) VALUES ('other@example.com', 'x', 'org_1')")
                    return nil
                } catch { return String(reflecting: error) }
            }
            #expect(refused?.contains("names a team already") == true, "\(refused ?? "inserted")")
            // Another user's email is refused, and says why.
            _ = try await signup(client, "taken@example.com")
            let taken = try await call(client, "/v1/customers/u_9", .put, key, ["kind": "user", "email": "TAKEN@example.com"])
            #expect(taken.status == .conflict && String(buffer: taken.body).contains("another user has the email"))
            // Bad input: missing fields, a wrong kind, an id that cannot be one.
            #expect(try await call(client, "/v1/customers/u_9", .put, key, ["kind": "user"]).status == .badRequest)
            #expect(try await call(client, "/v1/customers/u_9", .put, key, ["kind": "robot", "email": "r@example.com"]).status == .badRequest)
            #expect(try await call(client, "/v1/customers/t_9", .put, key, ["kind": "team", "name": "T", "owner": "nobody"]).status == .notFound)
            #expect(try await call(client, "/v1/customers/\(String(repeating: "x", count: 256))", .get, key).status == .notFound)
            #expect(try await call(client, "/v1/customers/not-there", .get, key).status == .notFound)
            // Ids with characters URLs encode (Auth0's `auth0|…`) are found by their encoded form.
            #expect(try await call(client, "/v1/customers/auth0%7C63f1", .put, key, ["kind": "user", "email": "zero@example.com"]).status == .created)
            let found = try await call(client, "/v1/customers/auth0%7C63f1", .get, key)
            #expect((object(found.body)["customer"] as? [String: Any])?["external_id"] as? String == "auth0|63f1", "\(String(buffer: found.body))")
        }
    }

    @Test func theProductsCustomerSpendsWithAKeyItWasGiven() async throws {
        try await withTallyServer { client, db in
            let key = try await backend(client, db)
            #expect(try await call(client, "/v1/customers/u_1", .put, key, ["kind": "user", "email": "ada@example.com"]).status == .created)
            let team = try await call(client, "/v1/customers/org_7", .put, key, ["kind": "team", "name": "Analytical", "owner": "u_1"])
            #expect(team.status == .created && (object(team.body)["customer"] as? [String: Any])?["owner"] as? String == "u_1")
            #expect(try await call(client, "/v1/customers/org_7/grants", .post, key, ["amount": 100, "description": "plan: pro"]).status == .created)
            let made = try await call(client, "/v1/customers/org_7/api-keys", .post, key, ["name": "production", "credit_limit": 60])
            #expect(made.status == .created)
            let apiKey = try #require(object(made.body)["key"] as? String)
            let keyID = try #require((object(made.body)["api_key"] as? [String: Any])?["id"] as? String)
            let spent = try await call(client, "/v1/credits/consume", .post, apiKey, ["amount": 25, "description": "search"])
            #expect(spent.status == .ok, "\(String(buffer: spent.body))")
            let balance = object(try await call(client, "/v1/customers/org_7/balance", .get, key).body)
            #expect(balance["balance"] as? Int == 75 && balance["available"] as? Int == 75, "\(balance)")
            let ledger = object(try await call(client, "/v1/customers/org_7/transactions", .get, key).body)["transactions"] as? [[String: Any]] ?? []
            #expect(ledger.map { $0["kind"] as? String ?? "" } == ["consume", "grant"], "\(ledger)")
            let keys = object(try await call(client, "/v1/customers/org_7/api-keys", .get, key).body)["api_keys"] as? [[String: Any]] ?? []
            #expect(keys.count == 1 && keys.first?["used"] as? Int == 25 && keys.first?["credit_limit"] as? Int == 60)
            // The user's own account is another: nothing there.
            #expect(object(try await call(client, "/v1/customers/u_1/balance", .get, key).body)["balance"] as? Int == 0)
            #expect((object(try await call(client, "/v1/customers/u_1/api-keys", .get, key).body)["api_keys"] as? [Any])?.isEmpty == true)
            // Revoked through the customer: the next spend is refused; another customer's key is not found.
            #expect(try await call(client, "/v1/customers/u_1/api-keys/\(keyID)", .delete, key).status == .notFound)
            #expect(try await call(client, "/v1/customers/org_7/api-keys/\(keyID)", .delete, key).status == .noContent)
            #expect(try await call(client, "/v1/credits/consume", .post, apiKey, ["amount": 1]).status == .unauthorized)
            // A team customer without an owner has no one for its keys to act for.
            #expect(try await call(client, "/v1/customers/org_8", .put, key, ["kind": "team", "name": "Ownerless"]).status == .created)
            #expect(try await call(client, "/v1/customers/org_8/api-keys", .post, key, ["name": "k"]).status == .conflict)
            let report = try await audit(db)
            #expect(report.ok, "\(report.failures)")
        }
    }

    @Test func aCustomerHasNoPasswordUntilTheyResetOne() async throws {
        try await withTallyServer(configure: { $0.trustedProxies = [AddressRange("127.0.0.1")!] }) { client, db in
            let key = try await backend(client, db)
            #expect(try await call(client, "/v1/customers/u_1", .put, key, ["kind": "user", "email": "ada@example.com"]).status == .created)
            // No password matches (not even the stored text), and the answer is the one an unknown email gets.
            for password in ["password123", Auth.noPassword] {
                let login = try await call(client, "/v1/auth/login", .post, nil, ["email": "ada@example.com", "password": password])
                #expect(login.status == .unauthorized && String(buffer: login.body).contains("invalid-credentials"))
            }
            // A password reset gives them one (the product vouched for the address).
            #expect(try await call(client, "/v1/auth/password-reset", .post, nil, ["email": "ada@example.com"]).status == .accepted)
            let token = try #require(try await mailedToken(to: "ada@example.com", prefix: "tly_reset_"))
            #expect(try await call(client, "/v1/auth/password-reset/confirm", .post, nil, ["token": token, "new_password": "a new password"]).status == .ok)
            #expect(try await call(client, "/v1/auth/login", .post, nil, ["email": "ada@example.com", "password": "a new password"]).status == .ok)
        }
    }
}
