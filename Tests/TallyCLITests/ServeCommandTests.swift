import Foundation
import Testing
import TallyPostgres
import TallyTestSupport

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

@Suite(.serialized) struct ServeCommandTests {
    @Test func serveStartsTheClusterAnswersHealthAndStopsOnCtrlC() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tally-serve-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let dataDir = folder + "/postgres"
        let port = try LocalCluster.freePort()

        let launched = try TallyProcess.launch(["serve", "--port", String(port), "--data-dir", dataDir])
        let (status, body) = try await getWhenUp("http://127.0.0.1:\(port)/healthz")
        #expect(status == 200)
        #expect(body.contains("\"reachable\":true"))

        // The post-deploy smoke check passes against it.
        let smoke = try await TallyProcess.run(["smoke", "--url", "http://127.0.0.1:\(port)"])
        #expect(smoke.status == 0, Comment(rawValue: smoke.stdout + smoke.stderr))
        #expect(smoke.stdout.contains("All 2 checks passed"))

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

    @Test func serveRefusesAnExternalDatabaseWithPendingMigrationsUnlessToldToMigrate() async throws {
        try await TestDatabase.withFreshDatabase { db in
            let port = try LocalCluster.freePort()
            let refused = try await TallyProcess.run(["serve", "--port", String(port), "--database-url", db.url()])
            #expect(refused.status != 0)
            #expect(refused.stderr.contains("pending migration(s) (\(MigrateCommandTests.ownTags.joined(separator: ", ")))"))
            #expect(refused.stderr.contains("tally serve --migrate"))

            let launched = try TallyProcess.launch(["serve", "--port", String(port), "--database-url", db.url(), "--migrate"])
            let (code, _) = try await getWhenUp("http://127.0.0.1:\(port)/healthz")
            #expect(code == 200)
            kill(launched.pid, SIGINT)
            let result = await TallyProcess.collect(launched)
            #expect(result.stderr.contains("Applied migrations: \(MigrateCommandTests.ownTags.joined(separator: ", "))"))
        }
    }

    private func getWhenUp(_ url: String) async throws -> (Int, String) {
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            do {
                let (data, response) = try await URLSession.shared.data(from: URL(string: url)!)
                return ((response as! HTTPURLResponse).statusCode, String(decoding: data, as: UTF8.self))
            } catch {
                if ContinuousClock.now > deadline { throw error }
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }
}
