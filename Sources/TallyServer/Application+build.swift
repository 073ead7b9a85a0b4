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

    public init(
        host: String = "127.0.0.1", port: Int = 8080, database: ConnectionSettings, logLevel: Logger.Level = .info,
        bcryptCost: UInt8 = 12
    ) {
        self.host = host
        self.port = port
        self.database = database
        self.logLevel = logLevel
        self.bcryptCost = bcryptCost
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
    let router = buildRouter(client: client, auth: Auth(client: client, bcryptCost: settings.bcryptCost))
    return Application(
        router: router,
        configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: "tally"),
        services: [client],
        logger: logger
    )
}

/// The routes, separate from the application so tests can drive them directly.
public func buildRouter(client: PostgresClient, auth: Auth) -> Router<TallyRequestContext> {
    let router = Router(context: TallyRequestContext.self)
    router.add(middleware: LogRequestsMiddleware(.debug))
    router.add(middleware: ProblemMiddleware())
    router.addRoutes(HealthController(client: client).endpoints)
    router.addRoutes(AuthController(auth: auth).endpoints)
    let teams = Teams(client: client)
    router.addRoutes(TeamsController(auth: auth, teams: teams).endpoints)
    router.addRoutes(CreditsController(auth: auth, keys: APIKeys(client: client), ledger: Ledger(client: client), teams: teams).endpoints)
    return router
}
