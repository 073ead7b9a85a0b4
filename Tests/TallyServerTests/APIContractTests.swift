import Foundation
import Hummingbird
import HummingbirdTesting
import TallyCredits
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyServer

/// The API document and the server agree: schemathesis (PyPI) generates requests from `/openapi.json` in
/// every phase and checks every answer — no 5xx, every status and body as documented, invalid requests
/// refused and valid ones accepted — as a session, as a session logging out, as an API key and as a service key
/// (`scripts/schemathesis-run.sh`; `scripts/fuzz-api.sh` runs the same against a release build, longer).
@Suite struct APIContractTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test func schemathesisFindsNoGapBetweenTheDocumentAndTheServer() async throws {
        try await withTallyServer { client, db in
            let admin = try await makeAdmin(client, db)
            try await grant(client, admin, user: admin.id, 1_000_000_000)
            let key = try await newKey(client, admin, ["name": "fuzz"])
            let service = try await newServiceKey(client, admin, name: "fuzz", scopes: ServiceScope.allCases.map(\.rawValue))
            let port = try #require(client.port)
            let output = FileManager.default.temporaryDirectory.appendingPathComponent("tally-schemathesis-\(UUID().uuidString).log").path
            defer { try? FileManager.default.removeItem(atPath: output) }
            let child = try Command.spawn(
                "/bin/bash",
                [Self.repository.appendingPathComponent("scripts/schemathesis-run.sh").path, "http://127.0.0.1:\(port)", admin.token, key, "10"],
                environment: ["FUZZ_LOGIN": #"{"email":"admin@example.com","password":"password123"}"#, "SERVICE_KEY": service],
                stdout: output)
            let status = await child.waitAsync(pollEvery: .milliseconds(200))
            let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
            let runs = text.components(separatedBy: "\n").filter { $0.hasPrefix("== schemathesis as ") }
            #expect(runs.count == 4, "four runs: \(runs)")
            #expect(status == 0, "schemathesis found gaps:\n\(text.suffix(20000))")
            let report = try await audit(db)
            #expect(report.ok, "\(report.failures)")
        }
    }
}
