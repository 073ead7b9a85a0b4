import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Hummingbird
import HummingbirdTesting
import PostgresNIO
import TallyCredits
import TallyPostgres
import Testing
@testable import TallyServer

@Suite struct OperationsTests {
    @Test func readyzNeedsTheDatabaseAndEveryMigrationThisBuildServes() async throws {
        try await withTallyServer { client, db in
            let ready = try await client.execute(uri: "/readyz", method: .get)
            #expect(ready.status == .ok)
            #expect(object(ready.body)["status"] as? String == "ready")

            let last = try #require(try MigrationTags.all.last)
            try await withSingleConnection(db) { try await $0.execute("DELETE FROM drizzle.__drizzle_migrations WHERE id = (SELECT max(id) FROM drizzle.__drizzle_migrations)") }
            let behind = try await client.execute(uri: "/readyz", method: .get)
            #expect(behind.status == .serviceUnavailable)
            let reasons = object(behind.body)["reasons"] as? [String] ?? []
            #expect(reasons.count == 1 && reasons[0].contains(last) && reasons[0].contains("tally migrate up"), "\(reasons)")
            // Liveness is a different question: the process and its database are fine.
            #expect(try await client.execute(uri: "/healthz", method: .get).status == .ok)
        }
    }

    @Test func aMethodThePathDoesNotHaveIs405WithAllow() async throws {
        try await withTallyServer { client, _ in
            for (uri, method, allow) in [
                ("/v1/credits/balance", HTTPRequest.Method.delete, "GET"),
                ("/v1/credits/consume", .get, "POST"),
                ("/v1/api-keys", .put, "GET, POST"),
                ("/v1/api-keys/\(UUID())", .get, "DELETE"),
                ("/v1/credits/holds/\(UUID())/capture", .get, "POST"),
            ] {
                let answer = try await client.execute(uri: uri, method: method)
                #expect(answer.status == .methodNotAllowed, "\(method) \(uri)")
                #expect(answer.headers[.allow] == allow, "\(method) \(uri)")
                #expect(answer.headers[.contentType] == "application/problem+json")
                #expect(object(answer.body)["type"] as? String == "/problems/method-not-allowed")
            }
            #expect(try await client.execute(uri: "/v1/nothing-here", method: .get).status == .notFound)
            #expect(try await client.execute(uri: "/v1/credits/balance/extra", method: .get).status == .notFound)
        }
    }

    @Test func metricsAreServedOnTheirOwnListenerNotTheAPIPort() async throws {
        // Exact counts are checked against a `tally serve` process of its own (ServeCommandTests): the metrics
        // registry is per process, and tests here share one.
        let metricsPort = try LocalCluster.freePort()
        try await withTallyServer(configure: { $0.metrics = ("127.0.0.1", metricsPort) }) { client, _ in
            _ = try await client.execute(uri: "/healthz", method: .get)
            #expect(try await client.execute(uri: "/metrics", method: .get).status == .notFound)
            let (data, response) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(metricsPort)/metrics")!)
            let http = try #require(response as? HTTPURLResponse)
            #expect(http.statusCode == 200)
            #expect((http.value(forHTTPHeaderField: "Content-Type") ?? "").hasPrefix("text/plain; version=0.0.4"))
            #expect(String(decoding: data, as: UTF8.self).contains("# TYPE tally_http_requests_total counter"))
            // The metrics listener serves nothing else.
            let (_, other) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(metricsPort)/healthz")!)
            #expect((other as? HTTPURLResponse)?.statusCode == 404)
        }
    }

    /// Every answer in these tests is checked against the document (`ContractCheckingClient`); the check itself
    /// must catch an answer that drifts from it.
    @Test func theContractCheckCatchesAnswersTheDocumentDoesNotDescribe() throws {
        let contract = Contract.shared
        func check(_ method: HTTPRequest.Method, _ uri: String, _ status: Int, _ type: String?, _ body: String) -> [String] {
            contract.violations(method: method, uri: uri, status: status, contentType: type, body: Array(body.utf8))
        }
        let balance = #"{"account_id":"3F2A0000-0000-0000-0000-000000000000","balance":5,"held":0,"available":5,"grants":[]}"#
        #expect(check(.get, "/v1/credits/balance?team_id=x", 200, "application/json", balance).isEmpty)
        #expect(check(.get, "/v1/credits/balance", 201, "application/json", balance).first?.contains("not documented") == true)
        #expect(check(.get, "/v1/credits/balance", 200, "text/html", balance).first?.contains("content type") == true)
        #expect(check(.get, "/v1/credits/balance", 200, "application/json", #"{"balance":5}"#).contains { $0.contains("required field account_id") })
        #expect(check(.get, "/v1/credits/balance", 200, "application/json", balance.replacing("\"grants\":[]", with: "\"grants\":[],\"extra\":1"))
            .contains { $0.contains("extra is not documented") })
        #expect(check(.get, "/v1/credits/balance", 200, "application/json", balance.replacing("\"held\":0", with: "\"held\":\"0\""))
            .contains { $0.contains("body.held") })
        let problem = #"{"type":"/problems/not-found","title":"Not Found","status":404,"detail":"no"}"#
        #expect(check(.delete, "/v1/api-keys/\(UUID())", 404, "application/problem+json", problem).isEmpty)
        #expect(check(.delete, "/v1/api-keys/\(UUID())", 404, "application/problem+json", problem.replacing("not-found", with: "conflict"))
            .contains { $0.contains("/problems/conflict") })
        #expect(check(.delete, "/v1/api-keys/\(UUID())", 404, "application/problem+json", problem.replacing("404", with: "400"))
            .contains { $0.contains("is not the answer's 404") })
        #expect(check(.delete, "/v1/api-keys/\(UUID())", 204, nil, "{}").first?.contains("documents no body") == true)
    }

    @Test func theOpenAPIDocumentDescribesEveryRouteAndBody() async throws {
        try await withTallyServer { http, db in
            let (admin, _, key) = try await fundedUser(http, db, credits: 10)
            let service = try await newServiceKey(http, admin, scopes: ServiceScope.allCases.map(\.rawValue))
            let response = try await http.execute(uri: "/openapi.json", method: .get)
            #expect(response.status == .ok)
            let document = object(response.body)
            #expect(document["openapi"] as? String == "3.1.0")
            let paths = try #require(document["paths"] as? [String: [String: Any]])
            var documented: Set<String> = []
            for (path, operations) in paths {
                for method in operations.keys { documented.insert("\(method.uppercased()) \(path)") }
            }

            let client = PostgresClient(configuration: .init(host: "127.0.0.1", username: "nobody", password: nil, database: nil, tls: .disable))
            let router = buildRouter(client: client, auth: Auth(client: client))
            // The portal's pages are HTML for browsers, not the JSON API the document describes.
            let routed = Set(router.routes.filter { !PortalController.isPortalPath("\($0.path)") }.map { "\($0.method) \($0.path)" })
            #expect(routed.subtracting(documented).isEmpty, "routes missing from /openapi.json: \(routed.subtracting(documented).sorted())")
            #expect(documented.subtracting(routed).isEmpty, "documented but not routed: \(documented.subtracting(routed).sorted())")

            let schemas = (document["components"] as? [String: Any])?["schemas"] as? [String: Any] ?? [:]
            for (route, operation) in documented.sorted().compactMap({ route -> (String, [String: Any])? in
                let parts = route.split(separator: " ", maxSplits: 1).map(String.init)
                return (paths[parts[1]]?[parts[0].lowercased()] as? [String: Any]).map { (route, $0) }
            }) {
                let schema = ((operation["requestBody"] as? [String: Any])?["content"] as? [String: Any])
                    .flatMap { ($0["application/json"] as? [String: Any])?["schema"] as? [String: Any] }
                if let schema {
                    // What the handler accepts, as it says when sent a field it does not know.
                    let properties = Set((schema["properties"] as? [String: Any])?.keys.map { $0 } ?? [])
                    let parts = route.split(separator: " ", maxSplits: 1).map(String.init)
                    let security = "\(operation["security"] ?? "")"
                    let token = security.contains("apiKey") ? key : security.contains("session") ? admin.token : security.contains("serviceKey") ? service : nil
                    let uri = parts[1].replacing(/\{\w+\}/, with: UUID().uuidString)
                    let probe = try await call(http, uri, try #require(HTTPRequest.Method(parts[0])), token, ["not_a_field": 1])
                    let detail = object(probe.body)["detail"] as? String ?? ""
                    #expect(probe.status == .badRequest && object(probe.body)["type"] as? String == "/problems/unknown-field", "\(route): \(detail)")
                    let accepted = Set(try #require(detail.split(separator: "this endpoint takes ").last, "\(route): \(detail)")
                        .split(separator: ", ").map(String.init))
                    #expect(properties == accepted, "\(route): the document's body fields differ from what the handler accepts")
                    #expect(Set(schema["required"] as? [String] ?? []).isSubset(of: properties), "\(route)")
                }
                // Every $ref points at a schema that exists.
                let text = String(decoding: try JSONSerialization.data(withJSONObject: operation), as: UTF8.self)
                for match in text.matches(of: /#\\\/components\\\/schemas\\\/(\w+)/) {
                    #expect(schemas[String(match.1)] != nil, "\(route) refers to a missing schema \(match.1)")
                }
            }
        }
    }
}

/// Tally's migration tags, in order, from the bundled journal.
enum MigrationTags {
    static var all: [String] {
        get throws {
            let url = URL(fileURLWithPath: TallyCredits.migrationsFolder).appendingPathComponent("meta/_journal.json")
            let journal = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any]
            return (journal?["entries"] as? [[String: Any]] ?? []).compactMap { $0["tag"] as? String }
        }
    }
}
