import Foundation
import Hummingbird
import HummingbirdTesting
import HTTPTypes
import PostgresNIO
import TallyCredits
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyServer

/// Automatic top-ups, decided in the spend's own transaction, once per crossing, under 50 concurrent spenders;
/// recurring grants issued by the running server's maintenance after it was down.
@Suite struct TopUpTests {
    /// A server that may call receivers on loopback, its maintenance every 100 ms.
    func withServer(_ body: @escaping @Sendable (any TestClientProtocol, ConnectionSettings, String) async throws -> Void) async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tally-topups-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try await withTallyServer(configure: { settings in
            settings.webhooks.allowPrivate = true
            settings.logLevel = .error
            settings.webhooks.interval = .milliseconds(50)
            settings.webhooks.secretKeyFile = folder + "/secret.key"
            settings.maintenanceInterval = .milliseconds(100)
        }) { client, db in try await body(client, db, folder) }
    }

    /// A service key with every scope, the customer cus_1 with `credits`, and an API key spending from it.
    func customer(_ client: some TestClientProtocol, _ db: ConnectionSettings, credits: Int) async throws -> (service: String, apiKey: String) {
        let admin = try await signup(client, "admin@example.com")
        try await withSingleConnection(db) { try await $0.execute("UPDATE users SET is_admin = true WHERE email = 'admin@example.com'") }
        let key = try await newServiceKey(client, admin, scopes: ServiceScope.allCases.map(\.rawValue))
        #expect(try await call(client, "/v1/customers/cus_1", .put, key, ["kind": "user", "email": "ada@example.com"]).status == .created)
        if credits > 0 {
            #expect(try await call(client, "/v1/customers/cus_1/grants", .post, key, ["amount": credits, "description": "plan"]).status == .created)
        }
        let made = try await call(client, "/v1/customers/cus_1/api-keys", .post, key, ["name": "spenders"])
        return (key, try #require(object(made.body)["key"] as? String))
    }

    /// `count` spends of `amount` at once, each on its own connection; their statuses.
    func spenders(_ client: some TestClientProtocol, _ apiKey: String, count: Int = 50, amount: Int = 1) async throws -> [Int] {
        let port = try #require(client.port)
        return try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<count { group.addTask { try await send(port: port, "/v1/credits/consume", token: apiKey, body: ["amount": amount]).status } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
    }

    func rows(_ db: ConnectionSettings, _ sql: String) async throws -> [String] {
        try await withPostgresClient(db) { client in
            var rows: [String] = []
            for try await row in try await client.query(PostgresQuery(unsafeSQL: sql)).decode(String.self) { rows.append(row) }
            return rows
        }
    }

    func available(_ client: some TestClientProtocol, _ key: String) async throws -> Int {
        try #require(object(try await call(client, "/v1/customers/cus_1/balance", .get, key).body)["available"] as? Int)
    }

    @Test func fiftySpendersRequestOneTopUpPerCrossing() async throws {
        try await withServer { client, db, folder in
            let (key, apiKey) = try await customer(client, db, credits: 100)
            // The receiver verifies with the endpoint's secret, so it starts once the endpoint is made.
            let port = try LocalCluster.freePort()
            let made = try await call(client, "/v1/webhooks", .post, key, ["url": "http://127.0.0.1:\(port)/hooks", "event_types": ["topup.requested"]])
            let secret = try #require(object(made.body)["secret"] as? String)
            let verifying = try await WebhookReceiver.start(secrets: [secret], port: port, folder: folder)
            defer { Task { await verifying.stop() } }

            let rule = try await call(client, "/v1/customers/cus_1/topup-rules", .post, key, ["below": 60, "amount": 500])
            #expect(rule.status == .created, "\(String(buffer: rule.body))")
            let ruleID = try #require((object(rule.body)["topup_rule"] as? [String: Any])?["id"] as? String)
            #expect((object(rule.body)["topup_rule"] as? [String: Any])?["action"] as? String == "request")

            // A spend that crosses, rolled back, asks for nothing: the request is written by its own transaction.
            let (keyID, userID) = (
                try await rows(db, "SELECT id::text FROM api_keys").first ?? "",
                try await rows(db, "SELECT id::text FROM users WHERE external_id = 'cus_1'").first ?? "")
            let inside = try await withSingleConnection(db) { connection -> Int in
                try await connection.execute("BEGIN")
                let op = #"[{"op": "consume", "key_id": "\#(keyID)", "user_id": "\#(userID)", "amount": 50, "description": "rolled back"}]"#
                try await connection.execute(PostgresQuery(unsafeSQL: "SELECT * FROM tally_apply('\(op)'::jsonb)"))
                var seen = 0
                for try await count in try await connection.query("SELECT count(*)::int FROM topups").decode(Int.self) { seen = count }
                try await connection.execute("ROLLBACK")
                return seen
            }
            #expect(inside == 1, "the spend crossed inside its transaction")
            #expect(try await rows(db, "SELECT id::text FROM topups").isEmpty, "and left no top-up when it rolled back")

            // 50 spends of 1 at once: 100 → 50, below 60 once.
            let first = try await spenders(client, apiKey)
            #expect(first.count == 50 && first.allSatisfy { $0 == 200 }, "\(first)")
            let topups = object(try await call(client, "/v1/customers/cus_1/topups", .get, key).body)["topups"] as? [[String: Any]] ?? []
            #expect(topups.count == 1, "\(topups)")
            let topup = try #require(topups.first)
            #expect(topup["amount"] as? Int == 500 && topup["action"] as? String == "request" && topup["rule_id"] as? String == ruleID)
            let crossedAt = try #require(topup["available"] as? Int)
            #expect(crossedAt < 60 && crossedAt >= 50, "it fired when the credits were below 60: \(crossedAt)")
            // The crossing's ledger entry is a spend of this account that left it below the line.
            let entry = try #require(topup["transaction_id"] as? Int)
            #expect(try await rows(db, "SELECT kind || ' ' || balance_after FROM credit_transactions WHERE id = \(entry)") == ["consume \(crossedAt)"])

            // The product gets topup.requested, verified by standardwebhooks, with the top-up's id ...
            let received = try await verifying.received { $0.count >= 1 }
            #expect(received.count == 1 && received.first?.type == "topup.requested" && received.first?.verified == [0], "\(received)")
            let topupID = try #require(topup["id"] as? String)
            #expect(received.first?.data["topup_id"] == topupID && received.first?.data["amount"] == "500", "\(received.first?.data ?? [:])")
            // ... charges its customer and grants with it as Idempotency-Key: a retried grant grants once.
            for _ in 0..<2 {
                var headers: HTTPFields = [.authorization: "Bearer \(key)"]
                headers[HTTPField.Name("Idempotency-Key")!] = topupID
                let granted = try await client.execute(
                    uri: "/v1/customers/cus_1/grants", method: .post, headers: headers, body: json(["amount": 500, "description": "top-up \(topupID)"]))
                #expect(granted.status == .created)
            }
            #expect(try await available(client, key) == 550)
            let rules = object(try await call(client, "/v1/customers/cus_1/topup-rules", .get, key).body)["topup_rules"] as? [[String: Any]] ?? []
            #expect(rules.first?["armed"] as? Bool == true, "the grant lifted it over the line: armed again")

            // The second crossing, by 50 spenders again: one more.
            #expect(try await call(client, "/v1/credits/consume", .post, apiKey, ["amount": 480]).status == .ok)
            let second = try await spenders(client, apiKey)
            #expect(second.allSatisfy { $0 == 200 })
            #expect(try await available(client, key) == 20)
            #expect(try await rows(db, "SELECT count(*)::text FROM topups") == ["2"])
            #expect(try await rows(db, "SELECT string_agg(type, ',' ORDER BY sequence) FROM webhook_events") == ["topup.requested,topup.requested"])
            let report = try await audit(db)
            #expect(report.ok, "\(report.failures)")
        }
    }

    @Test func grantingAtOnceKeepsAlertsQuietAndStopsAtTheDailyCap() async throws {
        try await withServer { client, db, _ in
            let (key, apiKey) = try await customer(client, db, credits: 100)
            #expect(try await call(client, "/v1/customers/cus_1/alerts", .post, key, ["threshold": 80]).status == .created)
            let rule = try await call(
                client, "/v1/customers/cus_1/topup-rules", .post, key,
                ["below": 80, "top_up_to": 200, "action": "grant", "max_per_day": 2, "description": "promotional top-up"])
            #expect(rule.status == .created, "\(String(buffer: rule.body))")
            let ruleID = try #require((object(rule.body)["topup_rule"] as? [String: Any])?["id"] as? String)

            // 50 spenders: the one that takes the account below 80 tops it up to 200 in its own transaction, so the
            // alert at 80 never sees the account below it, and the other spends stay above the line.
            let spent = try await spenders(client, apiKey)
            #expect(spent.allSatisfy { $0 == 200 })
            let topups = object(try await call(client, "/v1/customers/cus_1/topups", .get, key).body)["topups"] as? [[String: Any]] ?? []
            #expect(topups.count == 1, "\(topups)")
            let crossedAt = try #require(topups.first?["available"] as? Int)
            let granted = try #require(topups.first?["amount"] as? Int)
            #expect(crossedAt < 80 && granted == 200 - crossedAt && topups.first?["grant_id"] is String, "\(topups)")
            #expect(try await available(client, key) == 100 - 50 + granted)
            #expect(try await rows(db, "SELECT string_agg(type, ',' ORDER BY sequence) FROM webhook_events") == ["topup.granted"])
            #expect(try await rows(db, "SELECT description FROM credit_transactions WHERE kind = 'grant' ORDER BY id DESC LIMIT 1") == ["promotional top-up"])

            // A second crossing tops up again; the third in a day is capped: topup.capped once, and the alert fires.
            func crossOnce() async throws {
                let now = try await available(client, key)
                #expect(try await call(client, "/v1/credits/consume", .post, apiKey, ["amount": now - 70]).status == .ok)
            }
            try await crossOnce()
            #expect(try await available(client, key) == 200)
            try await crossOnce()
            #expect(try await available(client, key) == 70, "capped: no third top-up in 24 hours")
            #expect(try await call(client, "/v1/credits/consume", .post, apiKey, ["amount": 1]).status == .ok)
            #expect(try await rows(db, "SELECT string_agg(type, ',' ORDER BY sequence) FROM webhook_events")
                == ["topup.granted,topup.granted,topup.capped,balance.threshold_crossed"])

            // A day later the rule, still armed, tops up at the next change.
            try await withSingleConnection(db) { try await $0.execute("UPDATE topups SET created_at = created_at - interval '25 hours'") }
            #expect(try await call(client, "/v1/credits/consume", .post, apiKey, ["amount": 1]).status == .ok)
            #expect(try await available(client, key) == 200)
            #expect(try await rows(db, "SELECT count(*)::text FROM topups") == ["3"])
            #expect(try await rows(db, "SELECT type FROM webhook_events ORDER BY sequence DESC LIMIT 2") == ["balance.recovered", "topup.granted"])

            // Removed, the rule does nothing more; one made on an account already below its line acts at once.
            #expect(try await call(client, "/v1/customers/cus_1/topup-rules/\(ruleID)", .delete, key).status == .noContent)
            #expect(try await call(client, "/v1/credits/consume", .post, apiKey, ["amount": 190]).status == .ok)
            #expect(try await available(client, key) == 10)
            let late = try await call(client, "/v1/customers/cus_1/topup-rules", .post, key, ["below": 50, "amount": 25, "action": "grant"])
            #expect(late.status == .created && (object(late.body)["topup_rule"] as? [String: Any])?["armed"] as? Bool == false, "\(String(buffer: late.body))")
            #expect(try await available(client, key) == 35)
            let report = try await audit(db)
            #expect(report.ok, "\(report.failures)")
        }
    }

    @Test func badRulesAreRefusedWithWhatToDo() async throws {
        try await withServer { client, db, _ in
            let (key, _) = try await customer(client, db, credits: 10)
            let cases: [([String: Any], String)] = [
                (["below": 10], "exactly one of amount"),
                (["below": 10, "amount": 5, "top_up_to": 50], "exactly one of amount"),
                (["below": 10, "top_up_to": 5], "top_up_to must be at least below"),
                (["below": 0, "amount": 5], "below must be at least 1"),
                (["below": 10, "amount": 5, "action": "charge"], "action must be request"),
                (["below": 10, "amount": 5, "max_per_day": 0], "max_per_day must be from 1 to 1000"),
                (["below": 10, "amount": 5, "expires_in_seconds": -1], "expires_in_seconds"),
            ]
            for (body, says) in cases {
                let answer = try await call(client, "/v1/customers/cus_1/topup-rules", .post, key, body)
                #expect(answer.status == .badRequest && String(buffer: answer.body).contains(says), "\(body): \(String(buffer: answer.body))")
            }
            #expect(try await rows(db, "SELECT count(*)::text FROM topup_rules") == ["0"])
            let nobody = try await call(client, "/v1/customers/nobody/topup-rules", .post, key, ["below": 10, "amount": 5])
            #expect(nobody.status == .notFound)
        }
    }

    @Test func theServerCatchesUpRecurringGrantsMissedWhileItWasDown() async throws {
        try await withServer { client, db, _ in
            let (key, _) = try await customer(client, db, credits: 0)
            let made = try await call(client, "/v1/customers/cus_1/recurring-grants", .post, key, ["amount": 10, "every": "day", "description": "daily"])
            #expect(made.status == .created, "\(String(buffer: made.body))")
            let id = try #require((object(made.body)["recurring_grant"] as? [String: Any])?["id"] as? String)
            #expect(try await available(client, key) == 10, "the current period at once")

            // As if no server had run for three days: the schedule started four days ago with one period issued.
            try await withSingleConnection(db) {
                try await $0.execute(PostgresQuery(unsafeSQL: """
                    UPDATE recurring_grants SET anchor = anchor - interval '3 days', next_at = anchor - interval '2 days' WHERE id = '\(id)'
                    """))
                try await $0.execute(PostgresQuery(unsafeSQL: """
                    UPDATE recurring_grant_periods SET starts_at = starts_at - interval '3 days' WHERE recurring_grant_id = '\(id)'
                    """))
            }
            var periods: [[String: Any]] = []
            for _ in 0..<100 {
                let listed = object(try await call(client, "/v1/customers/cus_1/recurring-grants", .get, key).body)["recurring_grants"] as? [[String: Any]] ?? []
                periods = listed.first?["periods"] as? [[String: Any]] ?? []
                if periods.count >= 4 { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(periods.compactMap { $0["period"] as? Int } == [3, 2, 1, 0], "\(periods)")
            #expect(try await available(client, key) == 40)
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await rows(db, "SELECT count(*)::text FROM recurring_grant_periods") == ["4"], "issued once, however many rounds ran")

            #expect(try await call(client, "/v1/customers/cus_1/recurring-grants/\(id)", .delete, key).status == .noContent)
            let listed = object(try await call(client, "/v1/customers/cus_1/recurring-grants", .get, key).body)["recurring_grants"] as? [[String: Any]] ?? []
            #expect(listed.first?["ended_at"] is String)
            let report = try await audit(db)
            #expect(report.ok, "\(report.failures)")
        }
    }
}
