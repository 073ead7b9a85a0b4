import Hummingbird
import Logging
import PostgresNIO
import ServiceLifecycle
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
    /// How long a request may take in all, its body included: past it the answer is 503 with `Retry-After`.
    public var requestTimeout: Duration
    /// Header-read and keep-alive timeouts, and the cap on open connections.
    public var connections: ConnectionLimits
    /// Serve without request deadlines and connection limits: only to measure what they cost
    /// (Benchmarks/credits.sh, `tally serve --unlimited-for-benchmarks`), never in production.
    public var unlimitedForBenchmarks = false
    /// What the server does about Tally's migrations before it listens.
    public var migrations: Migrations = .unchecked
    /// Where migrations run, when not as `database`: the owner role's URL (`--owner-url`), so the server itself
    /// runs as a role without DDL.
    public var migrationDatabase: ConnectionSettings? = nil
    /// Proxies (load balancers) whose `X-Forwarded-For` names the client that login throttling counts; from
    /// anyone else the header is ignored and the socket's address counts.
    public var trustedProxies: [AddressRange] = []
    /// A session's absolute end, and how long it may sit unused.
    public var sessionLifetime: Duration = Auth.standardSessionLifetime
    public var sessionIdleTimeout: Duration = Auth.standardSessionIdleTimeout
    /// Where mail goes: `.eml` files in a folder (the default: `.tally/mail` of the working directory) or SMTP.
    public var mail: MailTransport = .files(directory: ".tally/mail")
    /// The sender of Tally's mail.
    public var mailFrom = "tally@localhost"
    /// Where users reach this server: the base of links in mails. Default: http://HOST:PORT.
    public var publicURL: String? = nil
    /// How webhooks are delivered, and where the key sealing their secrets is.
    public var webhooks = WebhookSettings()
    /// The product's session tokens the server takes for its users (`--trust-jwt`); nil: none.
    public var productTokens: ProductTokenSettings? = nil
    /// How often the outbox is checked for mail to deliver.
    public var outboxInterval: Duration = .milliseconds(500)
    /// Where `GET /metrics` listens (host, port; port 0 picks a free one): never on the API's port. Nil: nowhere.
    public var metrics: (host: String, port: Int)? = nil
    /// Where the server logs (at `logLevel`): by default the logging system's handler, labelled `tally`.
    /// Each request logs to it with its `hb.request.id`, and so do the database statements the request runs.
    public var logger: Logger? = nil

    /// Before the server listens: leave the schema alone (whoever runs the server has prepared it), refuse to
    /// start while a migration is pending or the history does not match this build, or apply what is pending.
    public enum Migrations: Sendable {
        case unchecked, required, applied
    }

    public static let standardRequestTimeout: Duration = .seconds(10)

    public init(
        host: String = "127.0.0.1", port: Int = 8080, database: ConnectionSettings, logLevel: Logger.Level = .info,
        bcryptCost: UInt8 = 12, maintenanceInterval: Duration = .seconds(5), idempotencyRetention: Duration = .seconds(24 * 3600),
        databaseWait: Duration = DatabaseWait.standard, requestTimeout: Duration = standardRequestTimeout, connections: ConnectionLimits = ConnectionLimits()
    ) {
        self.host = host
        self.port = port
        self.database = database
        self.logLevel = logLevel
        self.bcryptCost = bcryptCost
        self.maintenanceInterval = maintenanceInterval
        self.idempotencyRetention = idempotencyRetention
        self.databaseWait = databaseWait
        self.requestTimeout = requestTimeout
        self.connections = connections
    }
}

/// Builds the Tally HTTP application. The `PostgresClient` runs as one of the application's services,
/// so it starts before the server accepts requests and stops after it.
public func buildApplication(_ settings: ServerSettings) -> some ApplicationProtocol {
    var logger = settings.logger ?? Logger(label: "tally")
    logger.logLevel = settings.logLevel
    // Before anything makes a metric: one made earlier would report to no one.
    TallyMetrics.bootstrapped
    let database = Database(settings: settings.database, logger: logger)
    let idempotency = Idempotency(database: database, retention: settings.idempotencyRetention)
    // One of each: the ledger owns the consume batcher, whose lanes must be the only ones.
    let ledger = Ledger(database: database, databaseWait: settings.databaseWait)
    var auth = Auth(
        database: database, bcryptCost: settings.bcryptCost, sessionLifetime: settings.sessionLifetime, sessionIdleTimeout: settings.sessionIdleTimeout)
    auth.publicURL = settings.publicURL ?? "http://\(settings.host):\(settings.port)"
    // One for the routes and the deliveries: one key file read, one place it is made.
    let webhookStore = Webhooks(database: database, secrets: SecretBox(path: settings.webhooks.secretKeyFile))
    let router = buildRouter(
        database: database, auth: auth, idempotency: idempotency,
        ledger: ledger, databaseWait: settings.databaseWait, trustedProxies: settings.trustedProxies, webhookSettings: settings.webhooks,
        webhooks: webhookStore, productTokens: settings.productTokens.map { ProductTokens($0, logger: logger) })
    let maintenance = MaintenanceService(
        ledger: ledger, idempotency: idempotency, auth: auth, interval: settings.maintenanceInterval,
        grantExpiringNotice: settings.webhooks.grantExpiringNotice, logger: logger)
    let webhooks = WebhookService(webhooks: webhookStore, settings: settings.webhooks, logger: logger)
    let outbox = OutboxService(
        database: database, sender: MailSender(transport: settings.mail, from: settings.mailFrom, logger: logger),
        interval: settings.outboxInterval, logger: logger)
    var services: [any Service] = [database, ledger, maintenance, outbox, webhooks]
    if let metrics = settings.metrics {
        services.append(TallyMetrics.listener(host: metrics.host, port: metrics.port, logger: logger))
    }
    let configuration = ApplicationConfiguration(address: .hostname(settings.host, port: settings.port), serverName: "tally")
    let unlimited = settings.unlimitedForBenchmarks
    var app = Application(
        responder: DeadlineResponder(router.buildResponder(), limit: unlimited ? nil : settings.requestTimeout, logger: logger),
        server: unlimited ? .http1() : .http1(limits: settings.connections), configuration: configuration, services: services, logger: logger)
    let serving = settings.database
    let migrating = settings.migrationDatabase ?? settings.database
    let migrations = settings.migrations
    let log = logger
    app.beforeServerStarts {
        if migrations != .unchecked {
            let applied = try await SchemaGate.prepare(migrating, apply: migrations == .applied) { log.notice("\($0)") }
            if !applied.isEmpty { log.notice("Applied migrations: \(applied.joined(separator: ", "))") }
            // Migrated as the owner: tables the migrations made reach the serving role by default privileges,
            // which would include rewriting the ledger; the owner takes that back.
            if migrating.user != serving.user {
                try await withSingleConnection(migrating) { try await DatabaseRoles.keepAppendOnly(for: serving.user, on: $0) }
            }
        }
        // Say so when the server could do more than it needs: least privilege is the deployer's to set up.
        do {
            for warning in try await withSingleConnection(serving, { try await DatabaseRoles.warnings($0) }) {
                log.warning("\(warning)")
            }
        } catch {
            log.warning("could not check the server's database role: \(describeForLog(error))")
        }
    }
    return app
}

/// The routes over a pool the caller runs (tests drive them directly).
public func buildRouter(
    client: PostgresClient, auth: Auth, idempotency: Idempotency? = nil, databaseWait: Duration = DatabaseWait.standard
) -> Router<TallyRequestContext> {
    buildRouter(database: Database(client), auth: auth, idempotency: idempotency, databaseWait: databaseWait)
}

/// The routes.
public func buildRouter(
    database: Database, auth: Auth, idempotency: Idempotency? = nil, ledger: Ledger? = nil,
    databaseWait: Duration = DatabaseWait.standard, trustedProxies: [AddressRange] = [], webhookSettings: WebhookSettings = WebhookSettings(),
    webhooks: Webhooks? = nil, productTokens: ProductTokens? = nil
) -> Router<TallyRequestContext> {
    TallyMetrics.bootstrapped
    let router = Router(context: TallyRequestContext.self)
    router.add(middleware: DatabaseWaitMiddleware(limit: databaseWait))
    router.add(middleware: NoStoreMiddleware())
    router.add(middleware: MetricsMiddleware())
    router.add(middleware: LogRequestsMiddleware(.debug))
    let routes = RouteTable()
    router.add(middleware: ProblemMiddleware(routes: routes))
    let keys = APIKeys(database: database)
    let authenticators = Authenticators(auth: auth, keys: keys, serviceKeys: ServiceKeys(database: database), productTokens: productTokens)
    let idempotency = IdempotencyMiddleware(idempotency: idempotency ?? Idempotency(database: database))
    var teams = Teams(database: database)
    teams.publicURL = auth.publicURL
    router.addRoutes(HealthController(database: database, auth: auth).endpoints)
    router.addRoutes(OpenAPIDocument.endpoints)
    router.addRoutes(AuthController(auth: auth, authenticators: authenticators, trustedProxies: trustedProxies).endpoints)
    router.addRoutes(TeamsController(teams: teams, authenticators: authenticators, idempotency: idempotency).endpoints)
    let ledger = ledger ?? Ledger(database: database)
    router.addRoutes(CreditsController(keys: keys, ledger: ledger, teams: teams, authenticators: authenticators, idempotency: idempotency).endpoints)
    router.addRoutes(ServiceKeysController(serviceKeys: authenticators.serviceKeys, authenticators: authenticators, idempotency: idempotency).endpoints)
    let customers = Customers(database: database)
    router.addRoutes(CustomersController(
        customers: customers, alerts: BalanceAlerts(database: database), keys: keys, ledger: ledger, authenticators: authenticators,
        idempotency: idempotency
    ).endpoints)
    router.addRoutes(CustomerGrantsController(
        customers: customers, topUps: TopUps(database: database), recurring: RecurringGrants(database: database),
        authenticators: authenticators, idempotency: idempotency
    ).endpoints)
    router.addRoutes(WebhooksController(
        webhooks: webhooks ?? Webhooks(database: database, secrets: SecretBox(path: webhookSettings.secretKeyFile)), customers: customers,
        guardrail: WebhookAddressGuard(allowPrivate: webhookSettings.allowPrivate), authenticators: authenticators, idempotency: idempotency
    ).endpoints)
    router.addRoutes(PortalController(
        auth: auth, ledger: ledger, keys: keys, teams: teams, alerts: BalanceAlerts(database: database),
        webhooks: webhooks ?? Webhooks(database: database, secrets: SecretBox(path: webhookSettings.secretKeyFile)), trustedProxies: trustedProxies
    ).endpoints)
    routes.set(router.routes.map { (method: $0.method.rawValue, path: "\($0.path)") })
    return router
}

/// Every `/v1` answer carries credentials, balances or both: no cache may keep one (`Cache-Control: no-store`),
/// and no browser may read one as anything but its declared type (`X-Content-Type-Options: nosniff`).
struct NoStoreMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        if request.uri.path.hasPrefix("/v1/") {
            response.headers[.cacheControl] = "no-store"
            response.headers[.xContentTypeOptions] = "nosniff"
        }
        return response
    }
}

/// Bounds every database connection wait of a request (`DatabaseWait.limit`), so while the database is away
/// the request answers 503 with `Retry-After` instead of hanging.
struct DatabaseWaitMiddleware<Context: RequestContext>: RouterMiddleware {
    let limit: Duration

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        try await DatabaseWait.$limit.withValue(limit) { try await next(request, context) }
    }
}
