import Foundation
import Hummingbird
import HummingbirdTesting
import PostgresNIO
import TallyCredits
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyServer

/// The portal in a real browser: headless Chromium from Debian driven by Selenium from PyPI
/// (`scripts/portal-browser-test.py`), every page checked by axe-core, a screenshot of each written to the test's
/// output folder. `.ci/run` installs all of it.
@Suite struct PortalBrowserTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let python = repository.appendingPathComponent(".build/fuzz-venv/bin/python").path
    /// axe-core (Deque's), as PyPI's axe-playwright-python ships it: the npm registry is not reachable here.
    static var axe: String {
        let lib = repository.appendingPathComponent(".build/fuzz-venv/lib").path
        let python = (try? FileManager.default.contentsOfDirectory(atPath: lib))?.first { $0.hasPrefix("python3") } ?? "python3"
        return "\(lib)/\(python)/site-packages/axe_playwright_python/axe.min.js"
    }

    func run(_ phase: String, port: Int, mail: String, admin: String, screenshots: String) async throws -> (Int32, String) {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("tally-browser-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: output) }
        let child = try Command.spawn(
            Self.python,
            [Self.repository.appendingPathComponent("scripts/portal-browser-test.py").path, "http://127.0.0.1:\(port)", mail, admin, Self.axe, screenshots, phase],
            stdout: output)
        let status = await child.waitAsync(pollEvery: .milliseconds(200))
        return (status, (try? String(contentsOfFile: output, encoding: .utf8)) ?? "")
    }

    @Test func signUpSpendAndManageInChromiumWithNothingAxeCoreCallsSerious() async throws {
        for (path, install) in [("/usr/bin/chromium", "apt-get install chromium"), ("/usr/bin/chromedriver", "apt-get install chromium-driver"), (Self.axe, "bash .ci/run (pip install --no-deps axe-playwright-python)")] {
            try #require(FileManager.default.fileExists(atPath: path), "\(path) is missing: \(install)")
        }
        let shots = FileManager.default.temporaryDirectory.appendingPathComponent("tally-portal-screenshots-\(UUID().uuidString.prefix(8))").path
        try await withTallyServer { client, db in
            let admin = try await makeAdmin(client, db)
            let port = try #require(client.port)
            let mail = try #require(ServerUnderTest.mailFolder)
            let (signedUp, first) = try await run("signup", port: port, mail: mail, admin: admin.token, screenshots: shots)
            #expect(signedUp == 0, "the browser's sign-up:\n\(first.suffix(6000))")
            let user = try #require(first.split(separator: "\n").compactMap { line in
                (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
            }.compactMap { $0["user_id"] as? String }.first, "the sign-up phase names the user: \(first.suffix(2000))")

            // History: the grants were made two days ago. The ledger refuses rewrites; its owner lifts that
            // refusal for this one transaction to date them back, as an older account would have them.
            try await withSingleConnection(db) { connection in
                try await connection.execute("BEGIN")
                try await connection.execute("ALTER TABLE credit_transactions DISABLE TRIGGER credit_transactions_append_only")
                try await connection.execute(PostgresQuery(unsafeSQL: """
                    UPDATE credit_transactions t SET created_at = t.created_at - interval '2 days'
                    FROM user_credits a WHERE a.id = t.account_id AND a.user_id = '\(user)'
                    """))
                try await connection.execute(PostgresQuery(unsafeSQL: """
                    UPDATE credit_grants g SET created_at = g.created_at - interval '2 days'
                    FROM user_credits a WHERE a.id = g.account_id AND a.user_id = '\(user)'
                    """))
                try await connection.execute("ALTER TABLE credit_transactions ENABLE TRIGGER credit_transactions_append_only")
                try await connection.execute("COMMIT")
                // Ada is made an admin, for the webhooks page: an endpoint (at a documentation address) and a delivery.
                try await connection.execute(PostgresQuery(unsafeSQL: "UPDATE users SET is_admin = true WHERE id = '\(user)'"))
            }
            #expect(try await call(client, "/v1/webhooks", .post, admin.token, ["url": "http://203.0.113.7/hooks"]).status == .created)
            try await withSingleConnection(db) { connection in
                try await connection.execute(PostgresQuery(unsafeSQL: "SELECT tally_emit(a.id, 'balance.depleted', '{}') FROM user_credits a WHERE a.user_id = '\(user)'"))
            }

            let (used, second) = try await run("portal", port: port, mail: mail, admin: admin.token, screenshots: shots)
            #expect(used == 0, "the browser in the portal:\n\(second.suffix(8000))")
            let pages = (try FileManager.default.contentsOfDirectory(atPath: shots)).filter { $0.hasSuffix(".png") }.sorted()
            #expect(pages.count >= 16, "a screenshot of each page in \(shots): \(pages)")
            print("portal screenshots: \(shots) (\(pages.joined(separator: ", ")))")
            let report = try await audit(db)
            #expect(report.ok, "\(report.failures)")
        }
    }
}
