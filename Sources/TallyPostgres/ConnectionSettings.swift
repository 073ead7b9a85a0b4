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

    /// libpq's `sslmode`, as far as Tally supports it.
    public enum SSLMode: String, Sendable, CaseIterable {
        case disable, prefer, require
        case verifyFull = "verify-full"
    }

    public var endpoint: Endpoint
    public var user: String
    public var password: String?
    public var database: String
    public var sslMode: SSLMode
    public var applicationName: String?

    public init(
        endpoint: Endpoint,
        user: String,
        password: String? = nil,
        database: String,
        sslMode: SSLMode = .disable,
        applicationName: String? = nil
    ) {
        self.endpoint = endpoint
        self.user = user
        self.password = password
        self.database = database
        self.sslMode = sslMode
        self.applicationName = applicationName
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
        if sslMode != .prefer { query.append("sslmode=\(sslMode.rawValue)") }
        if let applicationName {
            query.append("application_name=" + Self.encode(applicationName, allowed: .userAllowed))
        }
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
            var unverified = TLSConfiguration.makeClientConfiguration()
            unverified.certificateVerification = .none
            let tls: PostgresConnection.Configuration.TLS
            switch sslMode {
            case .disable: tls = .disable
            case .prefer: tls = .prefer(try NIOSSLContext(configuration: unverified))
            case .require: tls = .require(try NIOSSLContext(configuration: unverified))
            case .verifyFull: tls = .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
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
        var unverified = TLSConfiguration.makeClientConfiguration()
        unverified.certificateVerification = .none
        switch sslMode {
        case .disable: return .disable
        case .prefer: return .prefer(unverified)
        case .require: return .require(unverified)
        case .verifyFull: return .require(.makeClientConfiguration())
        }
    }
}

// MARK: - Parsing

extension ConnectionSettings {
    /// The libpq default socket directory on Debian, used when a URL names no host.
    public static let defaultSocketDirectory = "/var/run/postgresql"

    /// Parses `postgres://` or `postgresql://` URLs:
    /// `postgres://user:password@host:port/database?sslmode=require&host=/socket/dir`.
    ///
    /// User, password and database are percent-decoded. With no host, or `?host=/dir`, the connection
    /// goes through the Unix socket in that directory. Errors name the part that is wrong and never
    /// repeat the password.
    public init(url: String) throws(TallyPostgresError) {
        let trimmed = url.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let schemeEnd = trimmed.range(of: "://") else {
            throw .invalidURL("it must start with postgres:// or postgresql:// (for example postgres://user:password@localhost:5432/tally)")
        }
        let scheme = trimmed[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "postgres" || scheme == "postgresql" else {
            throw .invalidURL("the scheme must be postgres:// or postgresql://, not \(scheme.prefix(20))://")
        }
        var rest = Substring(trimmed[schemeEnd.upperBound...])

        var queryString: Substring = ""
        if let q = rest.firstIndex(of: "?") {
            queryString = rest[rest.index(after: q)...]
            rest = rest[..<q]
        }
        var authority = rest
        var path: Substring = ""
        // The authority ends at the first "/" after the last "@": a password may not contain a raw "/".
        let userInfoEnd = rest.lastIndex(of: "@")
        let searchFrom = userInfoEnd.map { rest.index(after: $0) } ?? rest.startIndex
        if let slash = rest[searchFrom...].firstIndex(of: "/") {
            authority = rest[..<slash]
            path = rest[rest.index(after: slash)...]
        }

        // User info.
        var user: String?
        var password: String?
        var hostPort = authority
        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            hostPort = authority[authority.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                user = try Self.decode(userInfo[..<colon], part: "the user name")
                password = try Self.decode(
                    userInfo[userInfo.index(after: colon)...],
                    part: "the password (percent-encode @ : / ? # as %40 %3A %2F %3F %23)"
                )
            } else {
                user = try Self.decode(userInfo, part: "the user name")
            }
            if user?.isEmpty == true { user = nil }
        }

        // Host and port.
        var host: String?
        var port: Int?
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else {
                throw .invalidURL("the host starts an IPv6 address with [ but has no closing ]")
            }
            host = String(hostPort[hostPort.index(after: hostPort.startIndex)..<close])
            let after = hostPort[hostPort.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw .invalidURL("after the IPv6 host only :port may follow") }
                port = try Self.parsePort(after.dropFirst())
            }
        } else if let colon = hostPort.lastIndex(of: ":") {
            host = String(hostPort[..<colon])
            port = try Self.parsePort(hostPort[hostPort.index(after: colon)...])
        } else {
            host = String(hostPort)
        }
        if host?.contains(",") == true {
            throw .invalidURL("the host lists several servers; Tally connects to one (give the primary)")
        }
        if let h = host, h.contains(where: { $0 == " " || $0 == "/" || $0 == "#" }) {
            throw .invalidURL("the host contains a character a host name cannot have (a space, / or #)")
        }
        if host?.isEmpty == true { host = nil }

        // Database.
        var database: String?
        if !path.isEmpty {
            if path.contains("/") {
                throw .invalidURL("the database name contains a \"/\"; percent-encode it as %2F")
            }
            database = try Self.decode(path, part: "the database name")
        }

        // Query parameters.
        var sslMode: SSLMode?
        var socketDirectory: String?
        var applicationName: String?
        for pair in queryString.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = String(parts[0])
            let value = try Self.decode(parts.count > 1 ? parts[1] : "", part: "the value of ?\(key.prefix(40))=")
            switch key {
            case "sslmode":
                guard let mode = SSLMode(rawValue: value) else {
                    let allowed = SSLMode.allCases.map(\.rawValue).joined(separator: ", ")
                    throw .invalidURL("sslmode must be one of \(allowed)")
                }
                sslMode = mode
            case "host":
                if value.hasPrefix("/") {
                    socketDirectory = value
                } else if value.isEmpty {
                    throw .invalidURL("?host= is empty; give a host name or a Unix-socket directory such as /var/run/postgresql")
                } else {
                    host = value
                }
            case "port":
                port = try Self.parsePort(Substring(value))
            case "user":
                user = value
            case "password":
                password = value
            case "dbname":
                database = value
            case "application_name":
                applicationName = value
            case "connect_timeout":
                break  // Tally uses its own connect timeout.
            default:
                throw .invalidURL(
                    "unknown query parameter \"\(key.prefix(40))\"; supported: sslmode, host, port, user, password, dbname, application_name, connect_timeout"
                )
            }
        }

        guard let user, !user.isEmpty else {
            throw .invalidURL("it names no user; write postgres://USER@host/database")
        }
        let resolvedPort = port ?? 5432
        let endpoint: Endpoint
        if let socketDirectory {
            endpoint = .unixSocket(directory: socketDirectory, port: resolvedPort)
        } else if let host {
            endpoint = .tcp(host: host, port: resolvedPort)
        } else {
            endpoint = .unixSocket(directory: Self.defaultSocketDirectory, port: resolvedPort)
        }
        let defaultSSL: SSLMode
        switch endpoint {
        case .unixSocket: defaultSSL = .disable
        case .tcp(let h, _): defaultSSL = (h == "localhost" || h == "127.0.0.1" || h == "::1") ? .disable : .prefer
        }
        self.init(
            endpoint: endpoint,
            user: user,
            password: password,
            database: database.flatMap { $0.isEmpty ? nil : $0 } ?? user,
            sslMode: sslMode ?? defaultSSL,
            applicationName: applicationName
        )
    }

    private static func parsePort(_ text: Substring) throws(TallyPostgresError) -> Int {
        guard !text.isEmpty, text.allSatisfy(\.isASCII), let value = Int(text), (1...65535).contains(value) else {
            throw .invalidURL("the port must be a number from 1 to 65535")
        }
        return value
    }

    private static func decode(_ text: Substring, part: String) throws(TallyPostgresError) -> String {
        guard let decoded = String(text).removingPercentEncoding else {
            throw .invalidURL("\(part) has a % that does not start a valid escape like %40")
        }
        return decoded
    }

    private static func encode(_ text: String, allowed: CharacterSet) -> String {
        text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }
}

extension CharacterSet {
    fileprivate static let userAllowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")
    fileprivate static let passwordAllowed = userAllowed
    fileprivate static let pathAllowed = userAllowed.union(CharacterSet(charactersIn: "/"))
}
