import Foundation
import Testing
import PostgresNIO
import TallyPostgres
import TallyTestSupport

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

@Suite(.serialized, .slot) struct ServeCommandTests {
    @Test func serveStartsTheClusterAnswersHealthAndStopsOnCtrlC() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tally-serve-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let dataDir = folder + "/postgres"
        let port = try LocalCluster.freePort()

        let launched = try TallyProcess.launch(["serve", "--port", String(port), "--metrics-port", "0", "--data-dir", dataDir])
        let (status, body) = try await getWhenUp("http://127.0.0.1:\(port)/healthz")
        #expect(status == 200)
        #expect(body.contains("\"reachable\":true"))

        // The post-deploy smoke check passes against it.
        let smoke = try await TallyProcess.run(["smoke", "--url", "http://127.0.0.1:\(port)"])
        #expect(smoke.status == 0, Comment(rawValue: smoke.stdout + smoke.stderr))
        #expect(smoke.stdout.contains("All 3 checks passed"))

        // Ctrl-C: the server shuts down gracefully and exits 0.
        kill(launched.pid, SIGINT)
        let result = await TallyProcess.collect(launched)
        #expect(result.status == 0, Comment(rawValue: result.stderr))

        // With nothing listening, smoke fails and says so.
        let down = try await TallyProcess.run(["smoke", "--url", "http://127.0.0.1:\(port)", "--timeout", "2"])
        #expect(down.status == 1)
        #expect(down.stdout.contains("no answer"))
        let bad = try await TallyProcess.run(["smoke", "--url", "not a url"])
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("--url must be"))

        // The embedded database got Tally's schema.
        let schema = try await TallyProcess.run(["migrate", "status", "--data-dir", dataDir, "--json"])
        #expect(schema.status == 0)
        #expect(schema.stdout.contains("\"state\" : \"applied\""))
        #expect(!schema.stdout.contains("\"pending\""))

        // The cluster keeps running for the next serve, then `db stop` stops it.
        #expect(try LocalCluster(dataDirectory: dataDir).status().running)
        let stop = try await TallyProcess.run(["db", "stop", "--data-dir", dataDir])
        #expect(stop.status == 0)
    }

    @Test(.freshDatabase) func serveRefusesAnExternalDatabaseWithPendingMigrationsUnlessToldToMigrate() async throws {
        let db = try TestDatabase.current
        let port = try LocalCluster.freePort()
        let refused = try await TallyProcess.run(["serve", "--port", String(port), "--database-url", db.url()])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("pending migration(s) (\(MigrateCommandTests.ownTags.joined(separator: ", ")))"))
        #expect(refused.stderr.contains("tally serve --migrate"))

        let launched = try TallyProcess.launch(["serve", "--port", String(port), "--metrics-port", "0", "--database-url", db.url(), "--migrate"])
        let (code, _) = try await getWhenUp("http://127.0.0.1:\(port)/healthz")
        #expect(code == 200)

        // A second server on the same port, or with the metrics port taken, says which and exits.
        let taken = try await TallyProcess.run(["serve", "--port", String(try LocalCluster.freePort()), "--metrics-port", String(port), "--database-url", db.url()])
        #expect(taken.status == 1)
        #expect(taken.stderr.contains("--metrics-port \(port) is in use by another process"), Comment(rawValue: taken.stderr))
        let same = try await TallyProcess.run(["serve", "--port", String(port), "--metrics-port", String(port), "--database-url", db.url()])
        #expect(same.status != 0 && same.stderr.contains("metrics listen apart from the API"), Comment(rawValue: same.stderr))

        kill(launched.pid, SIGINT)
        let result = await TallyProcess.collect(launched)
        #expect(result.stderr.contains("Applied migrations: \(MigrateCommandTests.ownTags.joined(separator: ", "))"))
        #expect(result.stderr.contains("Metrics on http://127.0.0.1:"), "the metrics listener logs where it listens")
    }

    @Test(.freshDatabase) func smokeChecksTheCreditPathAndMetricsCountWhatHappened() async throws {
        let db = try TestDatabase.current
        let url = ["--database-url", db.url()]
        #expect(try await TallyProcess.run(["migrate", "up", "--no-backup"] + url).status == 0)
        #expect(try await TallyProcess.run(["users", "create", "--email", "ops@example.com", "--password", "password123", "--admin"] + url).status == 0)
        #expect(try await TallyProcess.run(["credits", "grant", "--user", "ops@example.com", "--amount", "10"] + url).status == 0)
        let key = try await TallyProcess.run(["keys", "create", "--user", "ops@example.com"] + url).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(key.hasPrefix("tly_"))

        let port = try LocalCluster.freePort()
        let metricsPort = try LocalCluster.freePort()
        let launched = try TallyProcess.launch(["serve", "--port", String(port), "--metrics-port", String(metricsPort)] + url)
        _ = try await getWhenUp("http://127.0.0.1:\(port)/healthz")
        let base = "http://127.0.0.1:\(port)"

        let smoke = try await TallyProcess.run(
            ["smoke", "--url", base, "--api-key", key, "--email", "ops@example.com"], environment: ["TALLY_SMOKE_PASSWORD": "password123"])
        #expect(smoke.status == 0, Comment(rawValue: smoke.stdout + smoke.stderr))
        #expect(smoke.stdout.contains("All 8 checks passed"), Comment(rawValue: smoke.stdout))
        let wrong = try await TallyProcess.run(
            ["smoke", "--url", base, "--email", "ops@example.com"], environment: ["TALLY_SMOKE_PASSWORD": "not-the-password"])
        #expect(wrong.status == 1)
        #expect(wrong.stdout.contains("login"))

        // One spend accepted, one refused: the metrics say exactly that (this process counts only these).
        func spend(_ amount: Int) async throws -> Int {
            var request = URLRequest(url: URL(string: base + "/v1/credits/consume")!)
            request.httpMethod = "POST"
            request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization")
            request.httpBody = Data("{\"amount\":\(amount)}".utf8)
            return (try await URLSession.shared.data(for: request).1 as? HTTPURLResponse)?.statusCode ?? 0
        }
        #expect(try await spend(4) == 200)
        #expect(try await spend(400) == 402)
        #expect(try await getWhenUp(base + "/metrics").0 == 404, "metrics are not on the API's port")
        let (status, metrics) = try await getWhenUp("http://127.0.0.1:\(metricsPort)/metrics")
        #expect(status == 200)
        let lines = Set(metrics.split(separator: "\n").map(String.init))
        #expect(lines.contains(#"tally_consume_total{outcome="accepted"} 1"#), Comment(rawValue: metrics))
        #expect(lines.contains(#"tally_consume_total{outcome="insufficient-credits"} 1"#))
        #expect(lines.contains(#"tally_http_requests_total{route="/v1/credits/consume",method="POST",status="200"} 1"#))
        #expect(lines.contains(#"tally_http_requests_total{route="/v1/credits/consume",method="POST",status="402"} 1"#))
        #expect(lines.contains(#"tally_http_requests_total{route="/v1/credits/holds",method="POST",status="201"} 1"#))
        #expect(lines.contains(#"tally_http_request_duration_seconds_count{route="/v1/credits/consume",method="POST",status="200"} 1"#))
        #expect(metrics.contains(#"tally_http_request_duration_seconds_bucket{route="/v1/credits/consume",method="POST",status="200",le="0.005"}"#))
        // Two spends, a hold and its release reached the database, each alone (one after the other): four
        // statements of one.
        #expect(lines.contains(#"tally_consume_batch_size_count 4"#), Comment(rawValue: metrics))
        #expect(lines.contains(#"tally_consume_batch_size_bucket{le="1.0"} 4"#) || lines.contains(#"tally_consume_batch_size_bucket{le="1"} 4"#))

        kill(launched.pid, SIGINT)
        #expect(await TallyProcess.collect(launched).status == 0)
        let audit = try await TallyProcess.run(["db", "audit"] + url)
        #expect(audit.status == 0, Comment(rawValue: audit.stdout))
        #expect(try await withPostgresClient(db) { client in
            var balance: Int64 = 0
            for try await b in try await client.query("SELECT balance FROM user_credits").decode(Int64.self) { balance = b }
            return balance
        } == 6, "the smoke check spent nothing; the one spend took 4")
    }

}
