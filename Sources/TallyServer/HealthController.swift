import Hummingbird
import PostgresNIO
import TallyCredits
import TallyPostgres

/// `GET /healthz`: whether the server can reach its database, with a clear body either way.
/// 200 when `SELECT version()` answers within two seconds, 503 otherwise; never a 500.
public struct HealthController: Sendable {
    public let database: Database
    public var timeout: Duration = .seconds(2)

    public init(database: Database) {
        self.database = database
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
        routes.get("healthz", use: health)
        routes.get("readyz", use: readiness)
        return routes
    }

    @Sendable func health(_ request: Request, context: TallyRequestContext) async throws -> EditedResponse<Health> {
        let database = self.database
        let clock = ContinuousClock()
        let start = clock.now
        do {
            let version = try await withTimeout(timeout) { () -> String in
                try await database.connection(context.queries) { connection in
                    let rows = try await connection.query("SELECT current_setting('server_version')")
                    for try await (version) in rows.decode(String.self) { return version }
                    return "unknown"
                }
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

    public struct Readiness: ResponseEncodable, Equatable {
        /// "ready" or "not-ready".
        public var status: String
        public var reasons: [String]
    }

    /// `GET /readyz`: whether this instance should get traffic: the database answers within the timeout and
    /// its schema has every migration this build expects (same file contents). 503 with the reasons otherwise.
    @Sendable func readiness(_ request: Request, context: TallyRequestContext) async throws -> EditedResponse<Readiness> {
        let database = self.database
        var reasons: [String] = []
        do {
            let missing = try await withTimeout(timeout) {
                try await database.connection(context.queries) { connection in try await SchemaGate.missingMigrations(connection) }
            }
            if !missing.isEmpty {
                reasons.append("the database lacks migration(s) \(missing.joined(separator: ", ")) this build needs; run `tally migrate up`")
            }
        } catch {
            reasons.append(error is TimeoutError ? "the database did not answer within \(timeout)" : "the database is unreachable: \(describe(error))")
        }
        let body = Readiness(status: reasons.isEmpty ? "ready" : "not-ready", reasons: reasons)
        return EditedResponse(status: reasons.isEmpty ? .ok : .serviceUnavailable, headers: [.cacheControl: "no-store"], response: body)
    }
}
