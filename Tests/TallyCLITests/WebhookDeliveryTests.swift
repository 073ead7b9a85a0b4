import Foundation
import PostgresNIO
import TallyPostgres
import TallyTestSupport
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Webhook delivery by real `tally serve` processes: a server killed with undelivered events loses none of them
/// (the next servers send them, a duplicate only ever with the same `webhook-id`), and two servers on one
/// database deliver each event once.
@Suite(.serialized, .slot) struct WebhookDeliveryTests {
    @Test(.freshDatabase(from: .tally)) func killedServerLosesNoEventAndTwoServersSendEachOnce() async throws {
        let db = try TestDatabase.current
        let url = db.url()
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("tally-hooks-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        #expect(try await TallyProcess.run(["users", "create", "--email", "shop@example.com", "--password", "shop-password-1", "--database-url", url]).status == 0)
        #expect(try await TallyProcess.run(["credits", "grant", "--user", "shop@example.com", "--amount", "10", "--database-url", url]).status == 0)
        let made = try await TallyProcess.run(["keys", "create", "--service", "--name", "backend", "--scope", "webhooks:write", "--database-url", url])
        let key = made.stdout.trimmingCharacters(in: .whitespacesAndNewlines)

        func serve() throws -> (port: Int, server: TallyProcess.Launched) {
            let port = try LocalCluster.freePort()
            // One working directory: the servers share the key file that seals webhook secrets.
            let server = try TallyProcess.launch(
                ["serve", "--port", String(port), "--metrics-port", "0", "--database-url", url, "--allow-private-webhooks", "--webhook-timeout", "2"],
                in: work)
            return (port, server)
        }
        func ready(_ port: Int) async throws -> Bool {
            for _ in 0..<300 {
                if (try? await Command.run("/usr/bin/curl", ["-sf", "http://127.0.0.1:\(port)/readyz"]))?.succeeded == true { return true }
                try await Task.sleep(for: .milliseconds(100))
            }
            return false
        }
        /// `count` events about the shop's account, in one transaction (as a batch of spends would write them).
        func emit(_ count: Int) async throws {
            try await withSingleConnection(db) { connection in
                try await connection.execute(PostgresQuery(unsafeSQL: """
                    SELECT tally_emit(a.id, 'balance.depleted', jsonb_build_object('n', g))
                    FROM user_credits a, generate_series(1, \(count)) g ORDER BY g
                    """))
            }
        }
        func eventIDs() async throws -> Set<String> {
            try await withPostgresClient(db) { client in
                var ids: Set<String> = []
                for try await id in try await client.query("SELECT id FROM webhook_events").decode(String.self) { ids.insert(id) }
                return ids
            }
        }

        let first = try serve()
        #expect(try await ready(first.port))
        let port = try LocalCluster.freePort()
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(first.port)/v1/webhooks")!)
        request.httpMethod = "POST"
        request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization")
        request.httpBody = Data(#"{"url": "http://127.0.0.1:\#(port)/hooks"}"#.utf8)
        let (data, _) = try await URLSession(configuration: .ephemeral).data(for: request)
        let secret = try #require((try JSONSerialization.jsonObject(with: data) as? [String: Any])?["secret"] as? String, "\(String(decoding: data, as: UTF8.self))")
        // A receiver slow to answer: the server is killed while deliveries are in flight.
        let receiver = try await WebhookReceiver.start(secrets: [secret], delay: 0.3, port: port, folder: work)
        defer { Task { await receiver.stop() } }

        try await emit(40)
        _ = try await receiver.received { $0.count >= 5 }
        kill(first.server.pid, SIGKILL)
        _ = await TallyProcess.collect(first.server)
        let atKill = receiver.received().count

        // Two servers take over: every event arrives, each verified; a duplicate has the same webhook-id.
        let (second, third) = (try serve(), try serve())
        defer {
            kill(second.server.pid, SIGINT)
            kill(third.server.pid, SIGINT)
        }
        #expect(try await ready(second.port))
        #expect(try await ready(third.port))
        let emitted = try await eventIDs()
        #expect(emitted.count == 40)
        let all = try await receiver.received(within: .seconds(60)) { Set($0.map(\.webhookID)).isSuperset(of: emitted) }
        #expect(Set(all.map(\.webhookID)) == emitted, "every event delivered after the restart: \(Set(all.map(\.webhookID)).count) of 40")
        #expect(all.allSatisfy { $0.verified == [0] })
        #expect(all.count - emitted.count <= 32, "duplicates only of what the killed server had in flight: \(all.count - emitted.count), \(atKill) received at the kill")

        // Then 100 more with both servers running: each arrives exactly once, on its first attempt.
        let before = Set(all.map(\.webhookID))
        try await emit(100)
        let later = try await eventIDs().subtracting(before)
        #expect(later.count == 100)
        let received = try await receiver.received(within: .seconds(60)) { Set($0.map(\.webhookID)).isSuperset(of: later) }
            .filter { later.contains($0.webhookID) }
        #expect(received.count == 100 && Set(received.map(\.webhookID)) == later, "each of 100 events once: \(received.count) deliveries")
        let attempts = try await withPostgresClient(db) { client in
            var counts: [Int] = []
            for try await n in try await client.query(
                "SELECT d.attempts FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id WHERE e.sequence > 40"
            ).decode(Int.self) { counts.append(n) }
            return counts
        }
        #expect(attempts.count == 100 && attempts.allSatisfy { $0 == 1 }, "one attempt each: \(Dictionary(grouping: attempts, by: { $0 }).mapValues(\.count))")
        // The account's sequence has no gap.
        #expect(try await scalar(db, "SELECT count(DISTINCT sequence) FROM webhook_events") == 140)
        #expect(try await scalar(db, "SELECT max(sequence) FROM webhook_events") == 140)
    }
}
