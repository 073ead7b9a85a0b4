import ArgumentParser
import Foundation
import TallyServer

struct Smoke: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a running Tally after a deploy: real HTTP requests, failing on any 5xx or unexpected answer.",
        discussion: "Checks now: /healthz answers 200 with the database reachable; an unknown route answers 4xx, not 5xx. Exit status 1 when a check fails."
    )

    @Option(help: ArgumentHelp("Base URL of the running server.", valueName: "url")) var url: String = "http://127.0.0.1:8080"
    @Option(help: ArgumentHelp("Seconds to wait for each answer.", valueName: "seconds")) var timeout: Double = 10
    @Flag(help: "Print the report as JSON.") var json = false

    func validate() throws {
        guard let parsed = URL(string: url), let scheme = parsed.scheme, ["http", "https"].contains(scheme), parsed.host != nil else {
            throw ValidationError("--url must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:8080")
        }
    }

    func run() async throws {
        let checks = await SmokeTest(baseURL: URL(string: url)!, timeout: timeout).run()
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
