import ArgumentParser
import Foundation
import Hummingbird
import Logging
import NIOCore
import TallyCredits
import TallyPostgres
import TallyServer

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the Tally HTTP server.",
        discussion: """
            Without DATABASE_URL the embedded PostgreSQL cluster is created or started first (and keeps \
            running after the server stops; `tally db stop` stops it), and Tally's migrations are applied to \
            it. Against DATABASE_URL the server refuses to start while migrations are pending, unless \
            --migrate; changed or unknown history always refuses. Ctrl-C stops the server gracefully. \
            GET /healthz reports whether the database is reachable.
            """
    )

    @Option(help: "Address to listen on.") var host: String = "127.0.0.1"
    @Option(help: "Port to listen on.") var port: Int = 8080
    @Flag(help: "Apply pending migrations before serving (always done for the embedded database).") var migrate = false
    @Option(help: ArgumentHelp(
        "The owner role's URL (`tally db roles`): migrations run as it, the server as DATABASE_URL's role (default: $TALLY_OWNER_URL).",
        valueName: "url"))
    var ownerURL: String?
    @Option(help: ArgumentHelp("How long a request waits for a database connection before it answers 503 with Retry-After, in seconds.", valueName: "seconds"))
    var databaseWait: Double = DatabaseWait.standard.inSeconds
    @Option(help: ArgumentHelp("How long a request may take in all, its body included; past it the answer is 503 with Retry-After (a body still arriving: 408). More than --database-wait.", valueName: "seconds"))
    var requestTimeout: Double = ServerSettings.standardRequestTimeout.inSeconds
    @Option(help: ArgumentHelp("How long a client may take to send a request's line and headers, from connecting (or from a later request's first byte); past it the connection is closed.", valueName: "seconds"))
    var headerTimeout: Double = ConnectionLimits().headerTimeout.inSeconds
    @Option(help: ArgumentHelp("How long a kept-alive connection may sit idle between requests before it is closed.", valueName: "seconds"))
    var idleTimeout: Double = ConnectionLimits().idleTimeout.inSeconds
    @Option(help: "Connections open at once; one more is answered 503 with Retry-After and closed.")
    var maxConnections: Int = ConnectionLimits().maximumConnections
    @Option(help: "Connections open at once from one client address (the socket's); one more is answered 503 and closed. Behind a load balancer, every client has its address: raise this to --max-connections.")
    var maxConnectionsPerAddress: Int = ConnectionLimits().maximumPerAddress
    @Option(name: .customLong("trusted-proxy"), help: ArgumentHelp(
        "A proxy (address or CIDR range, e.g. 10.0.0.0/8; repeatable) whose X-Forwarded-For names the client that login throttling counts. From any other peer the header is ignored.",
        valueName: "cidr"))
    var trustedProxies: [String] = []
    @Option(help: ArgumentHelp("A session ends when unused this long (each use slides it).", valueName: "hours"))
    var sessionIdleTimeout: Double = Auth.standardSessionIdleTimeout.inSeconds / 3600
    @Option(help: ArgumentHelp("A session ends this long after login, however much it is used.", valueName: "hours"))
    var sessionLifetime: Double = Auth.standardSessionLifetime.inSeconds / 3600
    @Option(help: ArgumentHelp(
        "Where mail goes: smtp://user:password@host:port (STARTTLS when offered; ?starttls=required|off) or smtps://…:465 (TLS from the start); &cafile=PATH trusts that CA for the server's certificate. Default: .eml files in .tally/mail of the working directory, each logged with its path.",
        valueName: "url"))
    var mailURL: String?
    @Option(help: ArgumentHelp("The sender address of Tally's mail.", valueName: "address")) var mailFrom = "tally@localhost"
    @Option(help: ArgumentHelp("Where users reach this server, the base of links in mails (default: http://HOST:PORT).", valueName: "url"))
    var publicURL: String?
    @Option(help: ArgumentHelp("Address of the metrics listener (GET /metrics, Prometheus text), apart from the API; keep it on loopback or a private network.", valueName: "address"))
    var metricsHost: String = "127.0.0.1"
    @Option(help: ArgumentHelp("Port of the metrics listener; 0 picks a free one (logged).", valueName: "port"))
    var metricsPort: Int = 9464
    @Flag(help: "Serve no metrics listener at all.") var noMetrics = false
    @Option(help: ArgumentHelp("How long a webhook receiver has to answer; past it the attempt failed and is retried on Standard Webhooks' schedule.", valueName: "seconds"))
    var webhookTimeout: Double = 15
    @Flag(help: "Let webhooks go to loopback, private and link-local addresses (refused by default: a receiver there reaches inside your network).")
    var allowPrivateWebhooks = false
    @Option(help: ArgumentHelp("The key that seals webhook secrets in the database (made on first use, mode 0600); every server on one database needs the same file.", valueName: "path"))
    var secretKeyFile: String = ".tally/secret.key"
    @Option(help: ArgumentHelp("How long before a grant expires its grant.expiring event goes out.", valueName: "hours"))
    var grantExpiringNotice: Double = 72
    @Option(help: ArgumentHelp(
        "Take the product's own signed session tokens (JWTs) for its users: the URL of its JWKS (https://…/.well-known/jwks.json), or a file holding a JWKS or the shared HS256 secret. The token's sub is a user customer's external id; its signature, exp, iss (--jwt-issuer) and aud (--jwt-audience) are checked.",
        valueName: "jwks-url-or-file"))
    var trustJwt: String?
    @Option(help: ArgumentHelp("With --trust-jwt: the iss a token must have.", valueName: "issuer")) var jwtIssuer: String?
    @Option(help: ArgumentHelp("With --trust-jwt: a value the token's aud must hold.", valueName: "audience")) var jwtAudience: String?
    // Only for Benchmarks/credits.sh, which measures what the deadlines and connection limits cost.
    @Flag(help: .hidden) var unlimitedForBenchmarks = false
    @OptionGroup var database: DatabaseOptions

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
        guard (0...65535).contains(metricsPort) else { throw ValidationError("--metrics-port must be between 0 and 65535") }
        if !noMetrics, metricsPort != 0, metricsPort == port, metricsHost == host || metricsHost == "0.0.0.0" || host == "0.0.0.0" {
            throw ValidationError("--metrics-port \(metricsPort) is the API's --port: metrics listen apart from the API; choose another port or --no-metrics")
        }
        guard databaseWait > 0 else { throw ValidationError("--database-wait must be more than 0 seconds") }
        guard requestTimeout > databaseWait else {
            throw ValidationError("--request-timeout (\(requestTimeout) s) must be more than --database-wait (\(databaseWait) s), so a request that waited for a connection still has time to run")
        }
        guard headerTimeout > 0, idleTimeout > 0 else { throw ValidationError("--header-timeout and --idle-timeout must be more than 0 seconds") }
        guard sessionIdleTimeout > 0, sessionLifetime > 0 else { throw ValidationError("--session-idle-timeout and --session-lifetime must be more than 0 hours") }
        guard webhookTimeout > 0, webhookTimeout <= 300 else { throw ValidationError("--webhook-timeout must be more than 0 and at most 300 seconds") }
        guard grantExpiringNotice > 0 else { throw ValidationError("--grant-expiring-notice must be more than 0 hours") }
        guard maxConnections > 0 else { throw ValidationError("--max-connections must be at least 1") }
        guard maxConnectionsPerAddress > 0 else { throw ValidationError("--max-connections-per-address must be at least 1") }
        if let mailURL {
            do { _ = try MailTransport(url: mailURL) } catch let error as CreditsError { throw ValidationError(error.message) }
        }
        if let trustJwt {
            guard let issuer = jwtIssuer, !issuer.isEmpty, let audience = jwtAudience, !audience.isEmpty else {
                throw ValidationError("--trust-jwt needs --jwt-issuer and --jwt-audience: a token from another issuer, or meant for another service, must never pass")
            }
            if case .file(let path) = ProductTokenSettings.keys(from: trustJwt), !FileManager.default.isReadableFile(atPath: path) {
                throw ValidationError("--trust-jwt \(trustJwt): no readable file there, and not an http(s) URL of a JWKS")
            }
        } else if jwtIssuer != nil || jwtAudience != nil {
            throw ValidationError("--jwt-issuer and --jwt-audience go with --trust-jwt")
        }
        for proxy in trustedProxies where AddressRange(proxy) == nil {
            throw ValidationError("--trusted-proxy \(proxy) is not an address or CIDR range such as 10.0.0.0/8 or 2001:db8::/32")
        }
    }

    func run() async throws {
        let logLevel = database.logLevel ?? .info
        startLogging(level: logLevel)
        var settings = try await database.resolve()
        var migrating: ConnectionSettings?
        if let owner = ownerURL ?? ProcessInfo.processInfo.environment["TALLY_OWNER_URL"].flatMap({ $0.isEmpty ? nil : $0 }) {
            guard database.externalURL != nil else {
                throw ValidationError("--owner-url is for an external database (DATABASE_URL); the embedded one migrates as its superuser and serves as \(DatabaseRoles.standardApplication) by itself")
            }
            migrating = try ConnectionSettings(url: owner)
        }
        if database.externalURL == nil {
            // The embedded database: migrate as its superuser, then serve as the application role.
            let applied = try await SchemaGate.prepare(settings, apply: true) { printErr($0) }
            if !applied.isEmpty { printErr("Applied migrations: \(applied.joined(separator: ", "))") }
            settings = try await Self.embeddedApplicationRole(settings)
        }
        printErr("Database: \(settings)")
        let limits = ConnectionLimits(
            headerTimeout: .seconds(headerTimeout), idleTimeout: .seconds(idleTimeout), maximumConnections: maxConnections,
            maximumPerAddress: maxConnectionsPerAddress)
        let descriptors = ConnectionLimits.raiseOpenFileLimit(toFit: maxConnections)
        if descriptors < maxConnections + ConnectionLimits.reservedDescriptors {
            printErr("Warning: this process may open \(descriptors) files, fewer than --max-connections \(maxConnections) needs; raise `ulimit -n` or lower --max-connections")
        }
        var serverSettings = ServerSettings(
            host: host, port: port, database: settings, logLevel: logLevel, databaseWait: .seconds(databaseWait),
            requestTimeout: .seconds(requestTimeout), connections: limits)
        // Checked (and applied, for the embedded database or with --migrate) before the server listens.
        serverSettings.migrations = database.externalURL == nil ? .unchecked : migrate ? .applied : .required
        serverSettings.migrationDatabase = migrating
        serverSettings.trustedProxies = trustedProxies.compactMap(AddressRange.init)
        serverSettings.sessionIdleTimeout = .milliseconds(Int64(sessionIdleTimeout * 3_600_000))
        serverSettings.sessionLifetime = .milliseconds(Int64(sessionLifetime * 3_600_000))
        if let mailURL { serverSettings.mail = try MailTransport(url: mailURL) }
        serverSettings.mailFrom = mailFrom
        serverSettings.publicURL = publicURL
        if !noMetrics { serverSettings.metrics = (metricsHost, metricsPort) }
        serverSettings.webhooks.timeout = .milliseconds(Int64(webhookTimeout * 1000))
        serverSettings.webhooks.allowPrivate = allowPrivateWebhooks
        serverSettings.webhooks.secretKeyFile = secretKeyFile
        serverSettings.webhooks.grantExpiringNotice = .milliseconds(Int64(grantExpiringNotice * 3_600_000))
        if let trustJwt, let jwtIssuer, let jwtAudience {
            serverSettings.productTokens = ProductTokenSettings(keys: ProductTokenSettings.keys(from: trustJwt), issuer: jwtIssuer, audience: jwtAudience)
        }
        if unlimitedForBenchmarks {
            printErr("Warning: serving without request deadlines or connection limits (--unlimited-for-benchmarks): only for measuring what they cost")
            serverSettings.unlimitedForBenchmarks = true
        }
        do {
            try await buildApplication(serverSettings).runService()
        } catch let error as IOError where error.errnoCode == EADDRINUSE {
            let ports = noMetrics ? "--port \(port)" : "--port \(port) or --metrics-port \(metricsPort)"
            printErr("Error: cannot listen: \(ports) is in use by another process (\(error)); choose a free port\(noMetrics ? "" : ", or --no-metrics")")
            throw ExitCode.failure
        }
    }

    /// The embedded cluster's application role (`DatabaseRoles`), made or brought up to date on every start;
    /// its password is derived from the superuser's, kept in the cluster's state file.
    static func embeddedApplicationRole(_ superuser: ConnectionSettings) async throws -> ConnectionSettings {
        var application = superuser
        application.user = DatabaseRoles.standardApplication
        application.password = sha256Hex(Data(((superuser.password ?? "") + "\n" + DatabaseRoles.standardApplication).utf8))
        try await withSingleConnection(superuser) { connection in
            try await DatabaseRoles.ensureLoginRole(application.user, password: application.password, on: connection)
            try await DatabaseRoles.grantApplication(application.user, owner: superuser.user, on: connection)
        }
        return application
    }
}
