import Foundation
import PostgresNIO

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
        var sslRootCert: String?
        var socketDirectory: String?
        var applicationName: String?
        var preparedStatements = true
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
            case "sslrootcert":
                guard !value.isEmpty else { throw .invalidURL("?sslrootcert= is empty; give the path of your CA's PEM file, or system") }
                sslRootCert = value
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
            case "prepared_statements":
                switch value {
                case "on", "true": preparedStatements = true
                case "off", "false": preparedStatements = false
                default: throw .invalidURL("prepared_statements must be on or off (off: for a pooler that does not keep named prepared statements)")
                }
            default:
                throw .invalidURL(
                    "unknown query parameter \"\(key.prefix(40))\"; supported: sslmode, sslrootcert, host, port, user, password, dbname, application_name, connect_timeout, prepared_statements"
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
        // Loopback needs no TLS; anything else is checked in full unless the URL says otherwise.
        case .tcp(let h, _): defaultSSL = (h == "localhost" || h == "127.0.0.1" || h == "::1") ? .disable : .verifyFull
        }
        self.init(
            endpoint: endpoint,
            user: user,
            password: password,
            database: database.flatMap { $0.isEmpty ? nil : $0 } ?? user,
            sslMode: sslMode ?? defaultSSL,
            sslRootCert: sslRootCert,
            applicationName: applicationName,
            preparedStatements: preparedStatements
        )
    }

    static func parsePort(_ text: Substring) throws(TallyPostgresError) -> Int {
        guard !text.isEmpty, text.allSatisfy(\.isASCII), let value = Int(text), (1...65535).contains(value) else {
            throw .invalidURL("the port must be a number from 1 to 65535")
        }
        return value
    }

    static func decode(_ text: Substring, part: String) throws(TallyPostgresError) -> String {
        guard let decoded = String(text).removingPercentEncoding else {
            throw .invalidURL("\(part) has a % that does not start a valid escape like %40")
        }
        return decoded
    }

    static func encode(_ text: String, allowed: CharacterSet) -> String {
        text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }
}

extension CharacterSet {
    static let userAllowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")
    static let passwordAllowed = userAllowed
    static let pathAllowed = userAllowed.union(CharacterSet(charactersIn: "/"))
}
