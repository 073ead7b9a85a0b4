import Hummingbird
import Logging
import PostgresNIO
import TallyCredits
import TallyPostgres

/// How the HTTP server is set up: where it listens and which database it uses.
public struct ServerSettings: Sendable {
    public var host: String
    public var port: Int
    public var database: ConnectionSettings
    public var logLevel: Logger.Level
    /// bcrypt's cost for new passwords (12 in production; tests use less).
    public var bcryptCost: UInt8
    /// How often the background task releases expired holds and purges old idempotency keys.
    public var maintenanceInterval: Duration
    /// How long an `Idempotency-Key`'s answer is kept (at least 24 hours in production).
    public var idempotencyRetention: Duration
    /// How long a request waits for a database connection before it answers 503 with `Retry-After`.
    public var databaseWait: Duration

    public init(
        host: String = "127.0.0.1", port: Int = 8080, database: ConnectionSettings, logLevel: Logger.Level = .info,
        bcryptCost: UInt8 = 12, maintenanceInterval: Duration = .seconds(5), idempotencyRetention: Duration = .seconds(24 * 3600),
        databaseWait: Duration = .seconds(3)
    ) {
        self.host = host
        self.port = port
        self.database = database
        self.logLevel = logLevel
        self.bcryptCost = bcryptCost
        self.maintenanceInterval = maintenanceInterval
        self.idempotencyRetention = idempotencyRetention
        self.databaseWait = databaseWait
    }
}

/// The request context every Tally route sees.
public typealias TallyRequestContext = BasicRequestContext

/// Builds the Tally HTTP application. The `PostgresClient` runs as one of the application's services,
/// so it starts before the server accepts requests and stops after it.
public func buildApplication(_ settings: ServerSettings) -> some ApplicationProtocol {
    var logger = Logger(label: "tally")
    logger.logLevel = settings.logLevel
    let client = PostgresClient(configuration: settings.database.clientConfiguration(), backgroundLogger: logger)
    let idempotency = Idempotency(client: client, retention: settings.idempotencyRetention)
    let router = buildRouter(
        client: client, auth: Auth(client: client, bcryptCost: settings.bcryptCost), idempotency: idempotency, databaseWait: settings.databaseWait)
    let maintenance = MaintenanceService(ledger: Ledger(client: client), idempotency: idempotency, interval: settings.maintenanceInterval, logger: logger)
    return Application(
        router: router,
        configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: "tally"),
        services: [client, maintenance],
        logger: logger
    )
}

/// The routes, separate from the application so tests can drive them directly.
public func buildRouter(
    client: PostgresClient, auth: Auth, idempotency: Idempotency? = nil, databaseWait: Duration = .seconds(3)
) -> Router<TallyRequestContext> {
    TallyMetrics.bootstrapped
    let router = Router(context: TallyRequestContext.self)
    router.add(middleware: DatabaseWaitMiddleware(limit: databaseWait))
    router.add(middleware: MetricsMiddleware())
    router.add(middleware: LogRequestsMiddleware(.debug))
    let routes = RouteTable()
    router.add(middleware: ProblemMiddleware(routes: routes))
    let keys = APIKeys(client: client)
    router.add(middleware: IdempotencyMiddleware(idempotency: idempotency ?? Idempotency(client: client), auth: auth, keys: keys))
    router.addRoutes(HealthController(client: client).endpoints)
    router.addRoutes(TallyMetrics.endpoints)
    router.addRoutes(OpenAPIDocument.endpoints)
    router.addRoutes(AuthController(auth: auth).endpoints)
    let teams = Teams(client: client)
    router.addRoutes(TeamsController(auth: auth, teams: teams).endpoints)
    router.addRoutes(CreditsController(auth: auth, keys: keys, ledger: Ledger(client: client), teams: teams).endpoints)
    routes.set(router.routes.map { (method: $0.method.rawValue, path: "\($0.path)") })
    return router
}

/// Bounds every database connection wait of a request (`DatabaseWait.limit`), so while the database is away
/// the request answers 503 with `Retry-After` instead of hanging.
struct DatabaseWaitMiddleware<Context: RequestContext>: RouterMiddleware {
    let limit: Duration

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        try await DatabaseWait.$limit.withValue(limit) { try await next(request, context) }
    }
}
