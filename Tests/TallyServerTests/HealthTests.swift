import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
import TallyPostgres
import TallyClient
import TallyTestSupport
@testable import TallyServer

@Suite struct HealthTests {
    struct Health: Decodable {
        struct Database: Decodable {
            var reachable: Bool
            var latency_ms: Double?
            var server_version: String?
            var error: String?
        }
        var status: String
        var database: Database
    }

    @Test func healthzIs200WhenTheDatabaseAnswersAndTellsDetailsToAdminsOnly() async throws {
        try await withTallyServer { client, db in
            // The first answer opens the pool's first connection, which a loaded test machine may take
            // longer than /healthz's 2 s to do: it then answers 503, as it should; a later one is 200.
            var response = try await client.execute(uri: "/healthz", method: .get)
            for _ in 0..<10 where response.status != .ok {
                try await Task.sleep(for: .milliseconds(500))
                response = try await client.execute(uri: "/healthz", method: .get)
            }
            #expect(response.status == .ok)
            #expect(response.headers[.contentType]?.hasPrefix("application/json") == true)
            let body = try JSONDecoder().decode(Health.self, from: Data(buffer: response.body))
            #expect(body.status == "ok")
            #expect(body.database.reachable)
            // Anyone: ok, nothing more (no version to look up exploits for).
            #expect(body.database.server_version == nil && body.database.latency_ms == nil && body.database.error == nil)
            let user = try await signup(client, "someone@example.com")
            let asUser = try await client.execute(uri: "/healthz", method: .get, headers: [.authorization: "Bearer \(user.token)"])
            #expect(try JSONDecoder().decode(Health.self, from: Data(buffer: asUser.body)).database.server_version == nil)
            let admin = try await makeAdmin(client, db)
            let asAdmin = try await client.execute(uri: "/healthz", method: .get, headers: [.authorization: "Bearer \(admin.token)"])
            let detailed = try JSONDecoder().decode(Health.self, from: Data(buffer: asAdmin.body))
            #expect(detailed.database.server_version?.isEmpty == false)
            #expect(detailed.database.latency_ms != nil)
        }
    }

    @Test func healthzIs503WithAClearBodyWhenTheDatabaseIsDown() async throws {
        // A port nothing listens on: bind one, note it, release it.
        let port = try LocalCluster.freePort()
        let down = ConnectionSettings(endpoint: .tcp(host: "127.0.0.1", port: port), user: "tally", password: "secret-pw", database: "tally")
        let app = buildApplication(ServerSettings(host: "127.0.0.1", port: 0, database: down, logLevel: .critical))
        try await app.test(.live) { client in
            for _ in 0..<2 {
                let response = try await client.execute(uri: "/healthz", method: .get)
                #expect(response.status == .serviceUnavailable)
                let text = String(buffer: response.body)
                #expect(!text.contains("secret-pw"))
                let body = try JSONDecoder().decode(Health.self, from: Data(buffer: response.body))
                #expect(body.status == "unavailable")
                #expect(body.database.reachable == false)
                // The cause is the server log's, not the caller's.
                #expect(body.database.error == nil)
            }
        }
    }

    @Test func unknownRoutesAre404ProblemsNotACrash() async throws {
        let port = try LocalCluster.freePort()
        let down = ConnectionSettings(endpoint: .tcp(host: "127.0.0.1", port: port), user: "tally", database: "tally")
        let app = buildApplication(ServerSettings(host: "127.0.0.1", port: 0, database: down, logLevel: .critical))
        try await app.test(.live) { client in
            let response = try await client.execute(uri: "/nope", method: .get)
            #expect(response.status == .notFound)
            #expect(response.headers[.contentType] == "application/problem+json")
            let problem = try JSONDecoder().decode(Problem.self, from: Data(buffer: response.body))
            #expect(problem.type == "/problems/not-found")
            #expect(problem.statusCode == 404)
            #expect(problem.detail.contains("/nope"))

            let wrongMethod = try await client.execute(uri: "/healthz", method: .delete)
            #expect(wrongMethod.status.code >= 400 && wrongMethod.status.code < 500)
            #expect(wrongMethod.headers[.contentType] == "application/problem+json")
        }
    }
}

@Suite struct SmokeTestTests {
    @Test func smokeFailsWhenTheDatabaseIsDown() async throws {
        let port = try LocalCluster.freePort()
        let down = ConnectionSettings(endpoint: .tcp(host: "127.0.0.1", port: port), user: "tally", database: "tally")
        let app = buildApplication(ServerSettings(host: "127.0.0.1", port: 0, database: down, logLevel: .critical))
        try await app.test(.live) { client in
            let serverPort = try #require(client.port)
            let checks = await SmokeTest(baseURL: URL(string: "http://127.0.0.1:\(serverPort)")!, timeout: 5).run()
            let health = try #require(checks.first)
            #expect(!health.passed)
            #expect(health.status == 503)
            #expect(health.detail.contains("server error 503"))
            #expect(checks.first { $0.name == "ready" }?.passed == false)
            #expect(checks.first { $0.name == "unknown route" }?.passed == true, "an unknown route is a 404, not a 5xx")
        }
    }
}
