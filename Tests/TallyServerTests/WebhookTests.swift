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

/// Webhooks as Standard Webhooks specifies them, checked by its reference library (`standardwebhooks`) in a
/// receiver the tests run; balance alerts decided in the spend's own transaction.
@Suite struct WebhookTests {
    static func folder() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("tally-webhooks-\(UUID().uuidString.prefix(8))").path
    }

    /// A server that may call receivers on loopback, with its own secret key file.
    func withWebhookServer(
        timeout: Duration = .seconds(15), _ body: @escaping @Sendable (any TestClientProtocol, ConnectionSettings, String) async throws -> Void
    ) async throws {
        let folder = Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try await withTallyServer(configure: { settings in
            settings.webhooks.allowPrivate = true
            settings.logLevel = .error
            settings.webhooks.interval = .milliseconds(50)
            settings.webhooks.timeout = timeout
            settings.webhooks.secretKeyFile = folder + "/secret.key"
        }) { client, db in try await body(client, db, folder) }
    }

    /// A service key with every scope, and a customer with `credits` and an alert at `threshold`.
    func customer(_ client: some TestClientProtocol, _ db: ConnectionSettings, credits: Int, threshold: Int?) async throws -> String {
        let admin = try await signup(client, "admin@example.com")
        try await withSingleConnection(db) { try await $0.execute("UPDATE users SET is_admin = true WHERE email = 'admin@example.com'") }
        let key = try await newServiceKey(client, admin, scopes: ServiceScope.allCases.map(\.rawValue))
        #expect(try await call(client, "/v1/customers/cus_1", .put, key, ["kind": "user", "email": "ada@example.com"]).status == .created)
        #expect(try await call(client, "/v1/customers/cus_1/grants", .post, key, ["amount": credits, "description": "plan"]).status == .created)
        if let threshold {
            #expect(try await call(client, "/v1/customers/cus_1/alerts", .post, key, ["threshold": threshold]).status == .created)
        }
        return key
    }

    func endpoint(_ client: some TestClientProtocol, _ key: String, url: String, types: [String]? = nil) async throws -> (id: String, secret: String) {
        var body: [String: Any] = ["url": url]
        if let types { body["event_types"] = types }
        let made = try await call(client, "/v1/webhooks", .post, key, body)
        #expect(made.status == .created, "\(String(buffer: made.body))")
        let object = object(made.body)
        return (try #require((object["webhook"] as? [String: Any])?["id"] as? String), try #require(object["secret"] as? String))
    }

    func spend(_ client: some TestClientProtocol, _ key: String, _ amount: Int) async throws {
        let made = try await call(client, "/v1/customers/cus_1/api-keys", .post, key, ["name": "spender"])
        let apiKey = try #require(object(made.body)["key"] as? String)
        #expect(try await call(client, "/v1/credits/consume", .post, apiKey, ["amount": amount]).status == .ok)
    }

    @Test func signedAsStandardWebhooksSaysAlsoDuringARotation() async throws {
        try await withWebhookServer { client, db, folder in
            let key = try await customer(client, db, credits: 100, threshold: 50)
            // The receiver verifies with a secret it does not know yet: started after the endpoint is made.
            let port = try LocalCluster.freePort()
            let (id, secret) = try await endpoint(client, key, url: "http://127.0.0.1:\(port)/hooks")
            #expect(secret.hasPrefix("whsec_") && Data(base64Encoded: String(secret.dropFirst(6)))?.count == 32)
            #expect(!(try await everyRowAsText(db)).contains(String(secret.dropFirst(6))), "the secret is sealed, never stored in the clear")
            let receiver = try await WebhookReceiver.start(secrets: [secret, "whsec_" + Data(repeating: 7, count: 32).base64EncodedString()], port: port, folder: folder)
            defer { Task { await receiver.stop() } }

            try await spend(client, key, 60)
            let first = try await receiver.received { $0.count >= 1 }
            let crossed = try #require(first.first)
            #expect(crossed.type == "balance.threshold_crossed" && crossed.verified == [0], "verified by standardwebhooks with the endpoint's secret only: \(crossed)")
            #expect(crossed.webhookID.hasPrefix("msg_") && crossed.signatures == 1)
            #expect(crossed.data["available"] == "40" && crossed.data["threshold"] == "50" && crossed.data["customer"] == "cus_1" && crossed.data["sequence"] == "1", "\(crossed.data)")

            // Rotated: the new secret is shown once; for a day both sign, so a receiver with either verifies.
            let rotated = try await call(client, "/v1/webhooks/\(id)/rotate-secret", .post, key)
            let newSecret = try #require(object(rotated.body)["secret"] as? String)
            #expect(newSecret != secret)
            let both = try await WebhookReceiver.start(secrets: [secret, newSecret], folder: folder)
            defer { Task { await both.stop() } }
            try await withSingleConnection(db) { try await $0.execute(PostgresQuery(unsafeSQL: "UPDATE webhook_endpoints SET url = '\(both.url)'")) }
            #expect(try await call(client, "/v1/customers/cus_1/grants", .post, key, ["amount": 100, "description": "top-up"]).status == .created)
            let recovered = try #require(try await both.received { $0.count >= 1 }.first)
            #expect(recovered.type == "balance.recovered" && recovered.signatures == 2 && recovered.verified == [0, 1], "\(recovered)")
            #expect(recovered.data["sequence"] == "2")

            // After the overlap only the new secret signs.
            try await withSingleConnection(db) { try await $0.execute("UPDATE webhook_endpoints SET previous_secret_until = now() - interval '1 second'") }
            try await spend(client, key, 100)
            let later = try await both.received { $0.count >= 2 }
            #expect(later.count == 2 && later[1].type == "balance.threshold_crossed" && later[1].signatures == 1 && later[1].verified == [1], "\(later)")
        }
    }

    @Test func fiftySpendersCrossAThresholdOnce() async throws {
        try await withWebhookServer { client, db, folder in
            let key = try await customer(client, db, credits: 100, threshold: 60)
            let receiver = try await WebhookReceiver.start(secrets: [], folder: folder)
            defer { Task { await receiver.stop() } }
            _ = try await endpoint(client, key, url: receiver.url, types: ["balance.threshold_crossed", "balance.recovered"])
            let made = try await call(client, "/v1/customers/cus_1/api-keys", .post, key, ["name": "spenders"])
            let apiKey = try #require(object(made.body)["key"] as? String)
            let port = try #require(client.port)

            // 50 spends of 1 at once, on 50 connections: the balance goes 100 → 50, past 60 exactly once.
            func fifty() async throws -> [Int] {
                try await withThrowingTaskGroup(of: Int.self) { group in
                    for _ in 0..<50 { group.addTask { try await send(port: port, "/v1/credits/consume", token: apiKey, body: ["amount": 1]).status } }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
            }
            func events() async throws -> [String] {
                try await withPostgresClient(db) { client in
                    var types: [String] = []
                    for try await type in try await client.query("SELECT type FROM webhook_events ORDER BY sequence").decode(String.self) { types.append(type) }
                    return types
                }
            }
            // A spend that crosses, rolled back, emits nothing: the event is written by the spend's own transaction.
            let keyID = try #require((object(made.body)["api_key"] as? [String: Any])?["id"] as? String)
            let userID = try await scalarText(db, "SELECT id::text FROM users WHERE external_id = 'cus_1'")
            let inside = try await withSingleConnection(db) { connection -> String in
                try await connection.execute("BEGIN")
                let op = #"[{"op": "consume", "key_id": "\#(keyID)", "user_id": "\#(userID)", "amount": 50, "description": "rolled back"}]"#
                try await connection.execute(PostgresQuery(unsafeSQL: "SELECT * FROM tally_apply('\(op)'::jsonb)"))
                var seen = ""
                for try await type in try await connection.query("SELECT string_agg(type, ',') FROM webhook_events").decode(String?.self) { seen = type ?? "" }
                try await connection.execute("ROLLBACK")
                return seen
            }
            #expect(inside == "balance.threshold_crossed", "the spend crossed inside its transaction")
            #expect(try await events().isEmpty, "and left no event when it rolled back")
            #expect(try await fifty().allSatisfy { $0 == 200 })
            #expect(try await events() == ["balance.threshold_crossed"])
            // Recovery (a grant lifts it back), then a second crossing by 50 spenders: one more of each.
            #expect(try await call(client, "/v1/customers/cus_1/grants", .post, key, ["amount": 50, "description": "top-up"]).status == .created)
            #expect(try await fifty().allSatisfy { $0 == 200 })
            #expect(try await events() == ["balance.threshold_crossed", "balance.recovered", "balance.threshold_crossed"])
            let received = try await receiver.received { $0.count >= 3 }
            #expect(received.map { $0.type ?? "" } == ["balance.threshold_crossed", "balance.recovered", "balance.threshold_crossed"], "in order: \(received.map(\.type))")
            #expect(received.map { $0.data["sequence"] ?? "" } == ["1", "2", "3"])
            // Depletion: once, at zero.
            let rest = try await fifty().filter { $0 == 200 }.count
            #expect(rest == 50)
            #expect(try await events().last == "balance.depleted")
            let report = try await audit(db)
            #expect(report.ok, "\(report.failures)")
        }
    }

    @Test func retriedWithTheSameIdDisabledBy410CutAtTheTimeout() async throws {
        try await withWebhookServer(timeout: .seconds(1)) { client, db, folder in
            let key = try await customer(client, db, credits: 100, threshold: 50)
            // 500, then 200: delivered on the retry (5 s later, ±10%), with the same webhook-id.
            let flaky = try await WebhookReceiver.start(secrets: [], plan: "500,200", folder: folder)
            defer { Task { await flaky.stop() } }
            let (flakyID, _) = try await endpoint(client, key, url: flaky.url)
            try await spend(client, key, 60)
            let twice = try await flaky.received(within: .seconds(20)) { $0.count >= 2 }
            #expect(twice.count == 2 && twice[0].webhookID == twice[1].webhookID && twice.map(\.answer) == ["500", "200"], "\(twice)")
            if twice.count == 2 {
                let gap = twice[1].receivedAt - twice[0].receivedAt
                #expect(gap >= 4.4 && gap < 12, "the second attempt \(gap) s after the first (schedule: 5 s ±10%)")
            }
            // The receiver has answered 200; Tally records the attempt once the answer is back, so wait for it.
            var delivery: [String: Any] = [:]
            for _ in 0..<100 {
                let page = object(try await call(client, "/v1/webhooks/\(flakyID)/deliveries", .get, key).body)
                delivery = (page["deliveries"] as? [[String: Any]])?.first ?? [:]
                if delivery["status"] as? String == "delivered" { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(delivery["status"] as? String == "delivered", "\(delivery)")
            #expect((delivery["attempts"] as? [[String: Any]])?.map { $0["status_code"] as? Int ?? 0 } == [500, 200], "\(delivery)")

            // 410: the endpoint is disabled and says why.
            let gone = try await WebhookReceiver.start(secrets: [], plan: "410", folder: folder)
            defer { Task { await gone.stop() } }
            let (goneID, _) = try await endpoint(client, key, url: gone.url)
            #expect(try await call(client, "/v1/customers/cus_1/grants", .post, key, ["amount": 100, "description": "top-up"]).status == .created)
            _ = try await gone.received { $0.count >= 1 }
            var disabled: [String: Any] = [:]
            for _ in 0..<100 {
                let listed = object(try await call(client, "/v1/webhooks", .get, key).body)["webhooks"] as? [[String: Any]] ?? []
                disabled = listed.first { $0["id"] as? String == goneID } ?? [:]
                if disabled["disabled_at"] is String { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(disabled["disabled_reason"] as? String == "the receiver answered 410 Gone", "\(disabled)")

            // A receiver that never answers is cut at the timeout (1 s here) and tried again later.
            let silent = try await WebhookReceiver.start(secrets: [], plan: "hang", folder: folder)
            defer { Task { await silent.stop() } }
            let (silentID, _) = try await endpoint(client, key, url: silent.url)
            try await spend(client, key, 100)
            _ = try await silent.received { $0.count >= 1 }
            var attempt: [String: Any] = [:]
            for _ in 0..<100 {
                let page = object(try await call(client, "/v1/webhooks/\(silentID)/deliveries", .get, key).body)
                attempt = ((page["deliveries"] as? [[String: Any]])?.first?["attempts"] as? [[String: Any]])?.first ?? [:]
                if !attempt.isEmpty { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            let ms = attempt["duration_ms"] as? Int ?? 0
            #expect(ms >= 950 && ms < 5000 && (attempt["error"] as? String)?.contains("no answer within 1 s") == true, "\(attempt)")

            // Redelivery sends it again with the same id, its earlier attempts still listed.
            let flakyDelivery = try #require(delivery["id"] as? Int)
            #expect(try await call(client, "/v1/webhooks/\(flakyID)/deliveries/\(flakyDelivery)/redeliver", .post, key).status == .accepted)
            let first = try #require(twice.first?.webhookID)
            let thrice = try await flaky.received { $0.filter { $0.webhookID == first }.count >= 3 }.filter { $0.webhookID == first }
            #expect(thrice.count == 3, "the redelivery came with the same webhook-id: \(thrice)")
        }
    }

    @Test func receiversOnPrivateAddressesAreRefusedByDefault() async throws {
        try await withTallyServer { client, db in
            let key = try await customer(client, db, credits: 10, threshold: nil)
            for url in ["http://127.0.0.1:9/hooks", "http://localhost/hooks", "http://169.254.169.254/latest", "http://[::1]/x", "http://10.1.2.3/",
                        "http://192.168.0.1/", "http://[::ffff:127.0.0.1]/"] {
                let refused = try await call(client, "/v1/webhooks", .post, key, ["url": url])
                #expect(refused.status == .badRequest && String(buffer: refused.body).contains("--allow-private-webhooks"), "\(url): \(String(buffer: refused.body))")
            }
            let notHTTP = try await call(client, "/v1/webhooks", .post, key, ["url": "ftp://example.com/x"])
            #expect(notHTTP.status == .badRequest && String(buffer: notHTTP.body).contains("http:// or https://"))
            let unknownType = try await call(client, "/v1/webhooks", .post, key, ["url": "https://example.com/x", "event_types": ["balance.exploded"]])
            #expect(unknownType.status == .badRequest && String(buffer: unknownType.body).contains("balance.threshold_crossed"))
        }
    }
}
