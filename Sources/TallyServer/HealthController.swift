import Hummingbird
import PostgresNIO
import TallyCredits
import TallyPostgres

/// `GET /healthz`: whether the server can reach its database, with a clear body either way.
/// 200 when `SELECT version()` answers within two seconds, 503 otherwise; never a 500. Anyone sees ok or
/// unavailable; an admin's session also sees the latency, PostgreSQL's version and the error (which the
/// server logs too), so an anonymous caller learns nothing to aim an attack with.
public struct HealthController: Sendable {
    public let database: Database
    /// To recognise an admin's session, when there is one.
    public let auth: Auth?
    public var timeout: Duration = .seconds(2)

    public init(database: Database, auth: Auth? = nil) {
        self.database = database
        self.auth = auth
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
            let version = try await withTimeout(timeout) { try await database.serverVersion(context.queries) }
            let elapsed = clock.now - start
            let ms = Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000
            var body = Health(status: "ok", database: .init(reachable: true))
            if await isAdmin(request, context) {
                body.database.latencyMs = (ms * 100).rounded() / 100
                body.database.serverVersion = version
            }
            return EditedResponse(status: .ok, headers: [.cacheControl: "no-store"], response: body)
        } catch {
            let reason = error is TimeoutError ? "the database did not answer within \(timeout)" : describe(error)
            context.logger.warning("health check: the database is unavailable", metadata: ["error": "\(reason)"])
            var body = Health(status: "unavailable", database: .init(reachable: false))
            if await isAdmin(request, context) { body.database.error = reason }
            return EditedResponse(status: .serviceUnavailable, headers: [.cacheControl: "no-store"], response: body)
        }
    }

    /// Whether the request carries an admin's live session token (false when it cannot be told).
    private func isAdmin(_ request: Request, _ context: TallyRequestContext) async -> Bool {
        guard let auth, let token = request.bearerToken, token.hasPrefix(Auth.sessionTokenPrefix) else { return false }
        return (try? await auth.user(forTokenHash: Auth.tokenHash(token), context: context.queries).isAdmin) ?? false
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
        } catch let error as SchemaGate.NotReady {
            reasons.append(error.description)
        } catch {
            // The cause goes to the log, not to whoever asks.
            context.logger.warning("readiness check: the database is unavailable", metadata: ["error": "\(describe(error))"])
            reasons.append(error is TimeoutError ? "the database did not answer within \(timeout)" : "the database is unreachable (the server's log says why)")
        }
        let body = Readiness(status: reasons.isEmpty ? "ready" : "not-ready", reasons: reasons)
        return EditedResponse(status: reasons.isEmpty ? .ok : .serviceUnavailable, headers: [.cacheControl: "no-store"], response: body)
    }
}
