import Foundation
import PostgresNIO

/// Where and how to connect to PostgreSQL: parsed from a `DATABASE_URL`, or made for the embedded cluster.
///
/// `description` and every error leave the password out, so settings can be logged.
public struct ConnectionSettings: Sendable, Equatable, CustomStringConvertible {
    /// TCP host name or address, or a Unix-socket directory.
    public enum Endpoint: Sendable, Equatable {
        case tcp(host: String, port: Int)
        /// The directory holding `.s.PGSQL.<port>`, as libpq's `host=/path`.
        case unixSocket(directory: String, port: Int)
    }

    /// libpq's `sslmode`, as far as Tally supports it. A remote server defaults to `verify-full`: encrypted, its
    /// certificate chained to a trusted root (`sslrootcert`, else the system's) and naming the host.
    public enum SSLMode: String, Sendable, CaseIterable {
        case disable, prefer, require
        case verifyCA = "verify-ca"
        case verifyFull = "verify-full"
    }

    public var endpoint: Endpoint
    public var user: String
    public var password: String?
    public var database: String
    public var sslMode: SSLMode
    /// libpq's `sslrootcert`: the PEM file of the certificate authorities `verify-ca` and `verify-full` trust
    /// (nil or `system`: the system's roots).
    public var sslRootCert: String?
    public var applicationName: String?
    /// Whether the hot statements run as named prepared statements (`?prepared_statements=off` turns them off:
    /// for a transaction-mode pooler that does not keep them, such as PgBouncer before 1.21). See
    /// `PreparedStatements`.
    public var preparedStatements: Bool

    public init(
        endpoint: Endpoint,
        user: String,
        password: String? = nil,
        database: String,
        sslMode: SSLMode = .disable,
        sslRootCert: String? = nil,
        applicationName: String? = nil,
        preparedStatements: Bool = true
    ) {
        self.sslRootCert = sslRootCert
        self.endpoint = endpoint
        self.user = user
        self.password = password
        self.database = database
        self.sslMode = sslMode
        self.applicationName = applicationName
        self.preparedStatements = preparedStatements
    }

    public var port: Int {
        switch endpoint {
        case .tcp(_, let port), .unixSocket(_, let port): port
        }
    }

    /// The same server and credentials, another database.
    public func with(database: String) -> ConnectionSettings {
        var copy = self
        copy.database = database
        return copy
    }

    /// The URL without the password: safe for logs and error messages.
    public var description: String { url(includingPassword: false) }

    /// A `postgres://` URL for these settings, usable by psql, pg_dump and `DATABASE_URL`.
    public func url(includingPassword: Bool = true) -> String {
        var out = "postgres://" + Self.encode(user, allowed: .userAllowed)
        if let password {
            out += ":" + (includingPassword ? Self.encode(password, allowed: .passwordAllowed) : "***")
        }
        out += "@"
        var query: [String] = []
        switch endpoint {
        case .tcp(let host, let port):
            out += (host.contains(":") ? "[\(host)]" : host) + ":\(port)"
        case .unixSocket(let directory, let port):
            out += ":\(port)"
            query.append("host=" + Self.encode(directory, allowed: .pathAllowed))
        }
        out += "/" + Self.encode(database, allowed: .userAllowed)
        query.append("sslmode=\(sslMode.rawValue)")
        if let sslRootCert { query.append("sslrootcert=" + Self.encode(sslRootCert, allowed: .pathAllowed)) }
        if let applicationName {
            query.append("application_name=" + Self.encode(applicationName, allowed: .userAllowed))
        }
        if !preparedStatements { query.append("prepared_statements=off") }
        if !query.isEmpty { out += "?" + query.joined(separator: "&") }
        return out
    }

    /// libpq-style environment for psql, pg_dump and pg_restore: the password travels in `PGPASSWORD`,
    /// never on a command line where `ps` would show it.
    public var libpqEnvironment: [String: String] {
        var env: [String: String] = ["PGUSER": user, "PGDATABASE": database, "PGPORT": String(port)]
        switch endpoint {
        case .tcp(let host, _): env["PGHOST"] = host
        case .unixSocket(let directory, _): env["PGHOST"] = directory
        }
        env["PGSSLMODE"] = sslMode.rawValue
        if let sslRootCert { env["PGSSLROOTCERT"] = sslRootCert }
        if let password { env["PGPASSWORD"] = password }
        if let applicationName { env["PGAPPNAME"] = applicationName }
        return env
    }

    /// The postgres-nio configuration for a `PostgresClient`.
    public func clientConfiguration() -> PostgresClient.Configuration {
        var configuration: PostgresClient.Configuration
        switch endpoint {
        case .tcp(let host, let port):
            configuration = .init(
                host: host, port: port, username: user, password: password, database: database,
                tls: tls
            )
        case .unixSocket:
            configuration = .init(unixSocketPath: socketPath, username: user, password: password, database: database)
        }
        configuration.options.connectTimeout = .seconds(5)
        if let applicationName {
            configuration.options.additionalStartupParameters = [("application_name", applicationName)]
        }
        return configuration
    }

    /// The postgres-nio configuration for a single `PostgresConnection`.
    public func connectionConfiguration() throws -> PostgresConnection.Configuration {
        var configuration: PostgresConnection.Configuration
        switch endpoint {
        case .tcp(let host, let port):
            let tls: PostgresConnection.Configuration.TLS = switch tlsRequired {
            case nil: .disable
            case false?: .prefer(try NIOSSLContext(configuration: tlsConfiguration))
            case true?: .require(try NIOSSLContext(configuration: tlsConfiguration))
            }
            configuration = .init(host: host, port: port, username: user, password: password, database: database, tls: tls)
        case .unixSocket:
            configuration = .init(unixSocketPath: socketPath, username: user, password: password, database: database)
        }
        configuration.options.connectTimeout = .seconds(5)
        if let applicationName {
            configuration.options.additionalStartupParameters = [("application_name", applicationName)]
        }
        return configuration
    }

    private var socketPath: String {
        guard case .unixSocket(let directory, let port) = endpoint else { return "" }
        return (directory.hasSuffix("/") ? directory : directory + "/") + ".s.PGSQL.\(port)"
    }

    private var tls: PostgresClient.Configuration.TLS {
        switch tlsRequired {
        case nil: .disable
        case false?: .prefer(tlsConfiguration)
        case true?: .require(tlsConfiguration)
        }
    }

    /// Whether `sslMode` asks for TLS: nil for none, false when a server without it will do (`prefer`), true
    /// when it must be (the one place the mode becomes a TLS requirement, for pools and single connections).
    private var tlsRequired: Bool? {
        switch sslMode {
        case .disable: nil
        case .prefer: false
        case .require, .verifyCA, .verifyFull: true
        }
    }

    /// TLS as `sslMode` asks: `prefer` and `require` encrypt without checking the certificate (as libpq);
    /// `verify-ca` checks it against the roots; `verify-full` the roots and the host name too.
    private var tlsConfiguration: TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        switch sslMode {
        case .disable, .prefer, .require: configuration.certificateVerification = .none
        case .verifyCA: configuration.certificateVerification = .noHostnameVerification
        case .verifyFull: configuration.certificateVerification = .fullVerification
        }
        if let sslRootCert, sslRootCert != "system" { configuration.trustRoots = .file(sslRootCert) }
        return configuration
    }
}
