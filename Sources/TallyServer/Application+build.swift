import Hummingbird
import Logging
import PostgresNIO
import TallyPostgres

/// How the HTTP server is set up: where it listens and which database it uses.
public struct ServerSettings: Sendable {
    public var host: String
    public var port: Int
    public var database: ConnectionSettings
    public var logLevel: Logger.Level

    public init(host: String = "127.0.0.1", port: Int = 8080, database: ConnectionSettings, logLevel: Logger.Level = .info) {
        self.host = host
        self.port = port
        self.database = database
        self.logLevel = logLevel
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
    let router = buildRouter(client: client)
    return Application(
        router: router,
        configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: "tally"),
        services: [client],
        logger: logger
    )
}

/// The routes, separate from the application so tests can drive them directly.
public func buildRouter(client: PostgresClient) -> Router<TallyRequestContext> {
    let router = Router(context: TallyRequestContext.self)
    router.add(middleware: LogRequestsMiddleware(.debug))
    router.add(middleware: ProblemMiddleware())
    router.addRoutes(HealthController(client: client).endpoints)
    return router
}
