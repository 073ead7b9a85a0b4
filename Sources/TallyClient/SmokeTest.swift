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
    /// With an API key, the credit path is checked too: its balance, and a 1-credit hold that is released
    /// at once (so the check spends nothing).
    public var apiKey: String?
    /// With an email and password, log-in is checked (and the session logged out again).
    public var login: (email: String, password: String)?

    public init(baseURL: URL, timeout: TimeInterval = 10, apiKey: String? = nil, login: (email: String, password: String)? = nil) {
        self.baseURL = baseURL
        self.timeout = timeout
        self.apiKey = apiKey
        self.login = login
    }

    /// Runs every check, in order, and returns them all (it does not stop at the first failure).
    public func run() async -> [Check] {
        var checks: [Check] = []
        checks.append(await check("health", "GET /healthz") { status, body in
            guard status == 200 else { return "expected 200, got \(status): \(body.prefix(200))" }
            guard body.contains("\"reachable\":true") else { return "the server cannot reach its database: \(body.prefix(200))" }
            return nil
        })
        checks.append(await check("ready", "GET /readyz") { status, body in
            status == 200 ? nil : "expected 200, got \(status): \(body.prefix(300))"
        })
        checks.append(await check("unknown route", "GET /v1/smoke-test-unknown-route") { status, body in
            (400..<500).contains(status) ? nil : "expected a 4xx for an unknown route, got \(status)"
        })
        if let login {
            var session: String?
            checks.append(await check("login", "POST /v1/auth/login", body: ["email": login.email, "password": login.password]) { status, body in
                guard status == 200 else { return "expected 200, got \(status): \(body.prefix(200))" }
                session = Self.field("token", in: body)
                return session == nil ? "the answer has no token" : nil
            })
            if let session {
                checks.append(await check("logout", "POST /v1/auth/logout", token: session) { status, _ in
                    status == 204 ? nil : "expected 204, got \(status)"
                })
            }
        }
        if let apiKey {
            var available: Int?
            checks.append(await check("balance", "GET /v1/credits/balance", token: apiKey) { status, body in
                guard status == 200 else { return "expected 200, got \(status): \(body.prefix(200))" }
                available = Self.field("available", in: body)
                return available == nil ? "the answer has no available credits" : nil
            })
            if let available, available > 0 {
                var hold: String?
                checks.append(await check("hold", "POST /v1/credits/holds", token: apiKey, body: ["amount": 1, "ttl_seconds": 60, "description": "tally smoke"]) { status, body in
                    guard status == 201 else { return "expected 201, got \(status): \(body.prefix(200))" }
                    hold = Self.field("hold_id", in: body)
                    return hold == nil ? "the answer has no hold_id" : nil
                })
                if let hold {
                    checks.append(await check("release", "POST /v1/credits/holds/\(hold)/release", token: apiKey) { status, body in
                        guard status == 200 else { return "expected 200, got \(status): \(body.prefix(200))" }
                        let after: Int? = Self.field("available", in: body)
                        return after == available ? nil : "available is \(after.map(String.init) ?? "missing") after the release, \(available) before"
                    })
                }
            } else if available != nil {
                checks.append(Check(name: "hold", request: "POST /v1/credits/holds", status: nil, passed: false,
                                    detail: "the key's account has no available credits to place a 1-credit hold; grant some", milliseconds: 0))
            }
        }
        return checks
    }

    static func field<T>(_ name: String, in body: String) -> T? {
        ((try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any])?[name] as? T
    }

    private func check(
        _ name: String, _ request: String, token: String? = nil, body: [String: Any]? = nil, verify: (Int, String) -> String?
    ) async -> Check {
        let parts = request.split(separator: " ", maxSplits: 1)
        let path = String(parts[1])
        var urlRequest = URLRequest(url: baseURL.appendingPathComponent(String(path.dropFirst())), timeoutInterval: timeout)
        urlRequest.httpMethod = String(parts[0])
        if let token { urlRequest.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let body {
            urlRequest.httpBody = try? JSONSerialization.data(withJSONObject: body)
            urlRequest.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
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
