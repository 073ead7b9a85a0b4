import Foundation

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Post-deploy verification of a running Tally (`tally smoke --url`): each check is one real HTTP request;
/// any 5xx or unexpected answer fails it.
public struct SmokeTest: Sendable {
    public struct Check: Sendable, Codable, Equatable {
        public var name: String
        public var request: String
        public var status: Int?
        public var passed: Bool
        public var detail: String
        public var milliseconds: Double
    }

    public var baseURL: URL
    public var timeout: TimeInterval

    public init(baseURL: URL, timeout: TimeInterval = 10) {
        self.baseURL = baseURL
        self.timeout = timeout
    }

    /// Runs every check, in order, and returns them all (it does not stop at the first failure).
    public func run() async -> [Check] {
        var checks: [Check] = []
        checks.append(await check("health", "GET /healthz") { status, body in
            guard status == 200 else { return "expected 200, got \(status): \(body.prefix(200))" }
            guard body.contains("\"reachable\":true") else { return "the server cannot reach its database: \(body.prefix(200))" }
            return nil
        })
        checks.append(await check("unknown route", "GET /v1/smoke-test-unknown-route") { status, body in
            (400..<500).contains(status) ? nil : "expected a 4xx for an unknown route, got \(status)"
        })
        return checks
    }

    private func check(_ name: String, _ request: String, verify: (Int, String) -> String?) async -> Check {
        let parts = request.split(separator: " ", maxSplits: 1)
        let path = String(parts[1])
        var urlRequest = URLRequest(url: baseURL.appendingPathComponent(String(path.dropFirst())), timeoutInterval: timeout)
        urlRequest.httpMethod = String(parts[0])
        let start = Date()
        do {
            let (data, response) = try await URLSession.shared.data(for: urlRequest)
            let status = (response as? HTTPURLResponse)?.statusCode ?? 0
            let body = String(decoding: data, as: UTF8.self)
            let problem = status >= 500 ? "server error \(status): \(body.prefix(200))" : verify(status, body)
            return Check(name: name, request: request, status: status, passed: problem == nil, detail: problem ?? "ok",
                         milliseconds: Date().timeIntervalSince(start) * 1000)
        } catch {
            return Check(name: name, request: request, status: nil, passed: false,
                         detail: "no answer from \(baseURL.absoluteString): \(error.localizedDescription)",
                         milliseconds: Date().timeIntervalSince(start) * 1000)
        }
    }
}
