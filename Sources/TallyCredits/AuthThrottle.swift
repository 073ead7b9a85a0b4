import Foundation
import PostgresNIO
import TallyPostgres

/// Stops password guessing without letting an attacker lock a victim out: failed logins are counted per
/// (account, client address) and per client address, and past a free allowance each further failure makes the
/// next attempt wait twice as long (1 s, 2 s, 4 s, … up to a cap). A victim logging in from elsewhere is
/// never slowed by someone else's guesses. Sign-ups are counted per address the same way. The counts live in
/// `auth_throttle`, so a restart resets nobody's budget; a count older than an hour starts again.
public struct AuthThrottle: Sendable {
    /// One budget: free failures within an hour, then doubling delays up to `maximumDelay` seconds.
    public struct Budget: Sendable {
        public var free: Int
        public var maximumDelay: Int
        public init(free: Int, maximumDelay: Int) {
            self.free = free
            self.maximumDelay = maximumDelay
        }
    }

    let database: Database
    /// Per (account, address): five wrong passwords an hour, then at most one try per 15 minutes.
    public var perAccount = Budget(free: 5, maximumDelay: 15 * 60)
    /// Per address, across accounts: fifty, then at most one per hour.
    public var perAddress = Budget(free: 50, maximumDelay: 3600)
    /// Sign-ups per address: ten an hour, then at most one per hour.
    public var signups = Budget(free: 10, maximumDelay: 3600)

    public init(database: Database) {
        self.database = database
    }

    /// Throws `tooManyAttempts` (with the seconds to wait) when the login of `email` from `address` must wait.
    public func checkLogin(email: String, from address: String, context: QueryContext) async throws {
        try await database.connection(context) { connection in
            try await check([Self.accountKey(email, address), Self.addressKey(address)], on: connection)
        }
    }

    /// Counts a failed login.
    public func loginFailed(email: String, from address: String, context: QueryContext) async throws {
        try await database.connection(context) { connection in
            try await count(Self.accountKey(email, address), perAccount, on: connection)
            try await count(Self.addressKey(address), perAddress, on: connection)
        }
    }

    /// A successful login clears its (account, address) count; the address's stays.
    public func loginSucceeded(email: String, from address: String, context: QueryContext) async throws {
        let key = Self.accountKey(email, address)
        try await database.connection(context) { connection in
            try await connection.execute("DELETE FROM auth_throttle WHERE key = \(key)")
        }
    }

    /// Counts a sign-up from `address`, refusing it with `tooManyAttempts` while the address must wait.
    public func signup(from address: String, context: QueryContext) async throws {
        let key = Self.signupKey(address)
        try await database.connection(context) { connection in
            try await check([key], on: connection)
            try await count(key, signups, on: connection)
        }
    }

    /// Deletes counts untouched for a day (maintenance).
    @discardableResult
    public func purgeStale(context: QueryContext) async throws -> Int {
        try await database.connection(context) { connection in
            var deleted = 0
            for try await _ in try await connection.query(
                "DELETE FROM auth_throttle WHERE updated_at < now() - interval '1 day' AND (blocked_until IS NULL OR blocked_until < now()) RETURNING 1"
            ) { deleted += 1 }
            return deleted
        }
    }

    private func check(_ keys: [String], on connection: DatabaseConnection) async throws {
        var wait = 0
        for try await value in try await connection.query(
            """
            SELECT ceil(extract(epoch FROM max(blocked_until) - now()))::int FROM auth_throttle
            WHERE key = ANY(\(keys)) AND blocked_until > now()
            """
        ).decode(Int?.self) { wait = value ?? 0 }
        if wait > 0 {
            throw CreditsError(
                .tooManyAttempts, "too many failed attempts from this address; try again in \(wait) s", retryAfter: wait)
        }
    }

    private func count(_ key: String, _ budget: Budget, on connection: DatabaseConnection) async throws {
        var failures = 0
        for try await n in try await connection.query(
            """
            INSERT INTO auth_throttle AS t (key, failures, updated_at) VALUES (\(key), 1, now())
            ON CONFLICT (key) DO UPDATE SET
              failures = CASE WHEN t.updated_at < now() - interval '1 hour' THEN 1 ELSE t.failures + 1 END,
              updated_at = now()
            RETURNING failures
            """
        ).decode(Int.self) { failures = n }
        guard failures > budget.free else { return }
        let delay = min(budget.maximumDelay, 1 << min(30, failures - budget.free - 1))
        try await connection.execute(
            "UPDATE auth_throttle SET blocked_until = now() + make_interval(secs => \(Double(delay))) WHERE key = \(key)")
    }

    static func accountKey(_ email: String, _ address: String) -> String {
        sha256Hex(Data("account:\(email.trimmingCharacters(in: .whitespaces).lowercased())|\(address)".utf8))
    }

    static func addressKey(_ address: String) -> String { sha256Hex(Data("address:\(address)".utf8)) }
    static func signupKey(_ address: String) -> String { sha256Hex(Data("signup:\(address)".utf8)) }
}
