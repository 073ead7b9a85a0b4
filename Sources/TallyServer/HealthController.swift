import Hummingbird
import PostgresNIO
import TallyPostgres

/// `GET /healthz`: whether the server can reach its database, with a clear body either way.
/// 200 when `SELECT version()` answers within two seconds, 503 otherwise; never a 500.
public struct HealthController: Sendable {
    public let client: PostgresClient
    public var timeout: Duration = .seconds(2)

    public init(client: PostgresClient) {
        self.client = client
    }

    public struct Health: ResponseEncodable, Equatable {
        public struct Database: Codable, Equatable, Sendable {
            public var reachable: Bool
            public var latencyMs: Double?
            public var serverVersion: String?
            public var error: String?

            enum CodingKeys: String, CodingKey {
                case reachable
                case latencyMs = "latency_ms"
                case serverVersion = "server_version"
                case error
            }
        }
        /// "ok" or "unavailable".
        public var status: String
        public var database: Database
    }

    public var endpoints: RouteCollection<TallyRequestContext> {
        let routes = RouteCollection(context: TallyRequestContext.self)
        routes.get("healthz") { _, _ in try await self.health() }
        return routes
    }

    func health() async throws -> EditedResponse<Health> {
        let client = self.client
        let clock = ContinuousClock()
        let start = clock.now
        do {
            let version = try await withTimeout(timeout) { () -> String in
                let rows = try await client.query("SELECT current_setting('server_version')", logger: LocalCluster.quietLogger)
                for try await (version) in rows.decode(String.self) { return version }
                return "unknown"
            }
            let elapsed = clock.now - start
            let ms = Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000
            let body = Health(
                status: "ok",
                database: .init(reachable: true, latencyMs: (ms * 100).rounded() / 100, serverVersion: version))
            return EditedResponse(status: .ok, headers: [.cacheControl: "no-store"], response: body)
        } catch {
            let reason = error is TimeoutError ? "the database did not answer within \(timeout)" : describe(error)
            let body = Health(status: "unavailable", database: .init(reachable: false, error: reason))
            return EditedResponse(status: .serviceUnavailable, headers: [.cacheControl: "no-store"], response: body)
        }
    }
}
