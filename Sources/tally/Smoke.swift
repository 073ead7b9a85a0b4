import ArgumentParser
import Foundation
import TallyClient

struct Smoke: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a running Tally after a deploy: real HTTP requests, failing on any 5xx or unexpected answer.",
        discussion: """
            Always: /healthz answers 200 with the database reachable, /readyz answers 200 (schema current), and an \
            unknown route answers 4xx, not 5xx.
            With --email (password from TALLY_SMOKE_PASSWORD): log-in works, and the session is logged out again.
            With --api-key (or TALLY_SMOKE_API_KEY): the key reads its balance, places a 1-credit hold and releases \
            it, and available credits come back unchanged, so the check spends nothing.
            Exit status 1 when a check fails.
            """
    )

    @Option(help: ArgumentHelp("Base URL of the running server.", valueName: "url")) var url: String = "http://127.0.0.1:8080"
    @Option(help: ArgumentHelp("Seconds to wait for each answer.", valueName: "seconds")) var timeout: Double = 10
    @Option(help: ArgumentHelp("API key whose credit path to check (default: $TALLY_SMOKE_API_KEY).", valueName: "tly_…")) var apiKey: String?
    @Option(help: ArgumentHelp("Log in as this user; the password comes from $TALLY_SMOKE_PASSWORD.", valueName: "email")) var email: String?
    @Flag(help: "Print the report as JSON.") var json = false

    func validate() throws {
        guard let parsed = URL(string: url), let scheme = parsed.scheme, ["http", "https"].contains(scheme), parsed.host != nil else {
            throw ValidationError("--url must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:8080")
        }
        if email != nil, ProcessInfo.processInfo.environment["TALLY_SMOKE_PASSWORD"]?.isEmpty ?? true {
            throw ValidationError("--email needs the password in TALLY_SMOKE_PASSWORD (it is not taken on the command line, where ps would show it)")
        }
    }

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let key = apiKey ?? environment["TALLY_SMOKE_API_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        let login = email.map { ($0, environment["TALLY_SMOKE_PASSWORD"] ?? "") }
        guard let base = URL(string: url) else { throw ValidationError("--url must be an http:// or https:// URL") }
        let checks = await SmokeTest(baseURL: base, timeout: timeout, apiKey: key, login: login).run()
        if json {
            try printJSON(checks)
        } else {
            var rows: [[String]] = [["CHECK", "REQUEST", "STATUS", "MS", "RESULT"]]
            for c in checks {
                rows.append([c.name, c.request, c.status.map(String.init) ?? "-", String(format: "%.0f", c.milliseconds), c.passed ? "ok" : "FAIL: \(c.detail)"])
            }
            printTable(rows)
            print(checks.allSatisfy(\.passed) ? "All \(checks.count) checks passed." : "\(checks.filter { !$0.passed }.count) of \(checks.count) checks failed.")
        }
        if !checks.allSatisfy(\.passed) { throw ExitCode.failure }
    }
}
