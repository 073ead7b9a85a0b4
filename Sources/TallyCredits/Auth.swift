import Crypto
import Foundation
import HummingbirdBcrypt
import PostgresNIO
import Synchronization
import TallyPostgres

/// A user as the API shows it (never the password hash).
public struct User: Sendable, Codable, Equatable {
    public var id: UUID
    public var email: String
    public var name: String?
    public var isAdmin: Bool
    public var createdAt: Date

    enum CodingKeys: String, CodingKey {
        case id, email, name
        case isAdmin = "is_admin"
        case createdAt = "created_at"
    }
}

/// A new session: the opaque token is shown once; only its SHA-256 is stored.
public struct SessionGrant: Sendable, Codable, Equatable {
    public var user: User
    public var token: String
    public var expiresAt: Date

    enum CodingKeys: String, CodingKey {
        case user, token
        case expiresAt = "expires_at"
    }
}

/// Sign-up, log-in, log-out and session lookup, on the `users` and `sessions` tables.
///
/// Passwords are bcrypt-hashed on NIO's thread pool (bcrypt is slow by design and must not hold a thread
/// of the cooperative pool). Emails are unique and compared case-insensitively. A wrong password and an
/// unknown email get the same error, after the same amount of bcrypt work.
public struct Auth: Sendable {
    /// Session tokens start with this; API keys with `tly_` alone.
    public static let sessionTokenPrefix = "tly_sess_"

    public let database: Database
    /// Failed logins and sign-ups counted per account and address.
    public var throttle: AuthThrottle
    /// Where password hashing waits its turn (or is refused when too many wait).
    public let bcrypt: BcryptGate
    public var bcryptCost: UInt8
    /// A session ends this long after it began, however much it is used.
    public var sessionLifetime: Duration
    /// A session ends when unused this long (each use slides it, at most once a minute).
    public var sessionIdleTimeout: Duration

    /// Where users reach this server: the base of links in mails (`--public-url`).
    public var publicURL = "http://127.0.0.1:8080"

    public static let standardSessionLifetime: Duration = .seconds(14 * 24 * 3600)
    public static let standardSessionIdleTimeout: Duration = .seconds(24 * 3600)

    public init(
        client: PostgresClient, bcryptCost: UInt8 = 12, sessionLifetime: Duration = standardSessionLifetime,
        sessionIdleTimeout: Duration = standardSessionIdleTimeout
    ) {
        self.init(database: Database(client), bcryptCost: bcryptCost, sessionLifetime: sessionLifetime, sessionIdleTimeout: sessionIdleTimeout)
    }

    public init(
        database: Database, bcryptCost: UInt8 = 12, sessionLifetime: Duration = standardSessionLifetime,
        sessionIdleTimeout: Duration = standardSessionIdleTimeout
    ) {
        self.database = database
        self.throttle = AuthThrottle(database: database)
        self.bcrypt = .standard()
        self.bcryptCost = bcryptCost
        self.sessionLifetime = sessionLifetime
        self.sessionIdleTimeout = sessionIdleTimeout
    }

    /// Creates a verified user, as an operator does (`tally users create`, which can make admins); email-taken
    /// when the email is in use. Sign-ups from the API go through `signup` and a mailed link instead.
    public func createUser(email: String, password: String, name: String?, admin: Bool, context: QueryContext) async throws -> User {
        let email = try TextRules.checkEmail(email)
        try TextRules.checkPassword(password)
        if let name, name.unicodeScalars.count > TextRules.nameMaximum {
            throw CreditsError(.invalidInput, "name is longer than \(TextRules.nameMaximum) characters")
        }
        let cost = bcryptCost
        let input = Self.bcryptInput(password)
        let hash = try await bcrypt.run { Bcrypt.hash(input, cost: cost) }
        let user: User
        do {
            user = try await database.connection(context) { connection in
                let rows = try await connection.query(
                    """
                    INSERT INTO users (email, name, password_hash, is_admin, email_verified_at)
                    VALUES (\(email), \(name), \(hash), \(admin), now())
                    RETURNING id, email, name, is_admin, created_at
                    """)
                for try await (id, email, name, admin, created) in rows.decode((UUID, String, String?, Bool, Date).self) {
                    return User(id: id, email: email, name: name, isAdmin: admin, createdAt: created)
                }
                throw CreditsError(.invalidInput, "the user was not created")
            }
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == "23505" {
            throw CreditsError(.emailTaken, "an account with this email already exists; log in instead", underlying: error)
        }
        return user
    }

    /// The user with this email (compared case-insensitively) or id.
    public func findUser(_ emailOrID: String, context: QueryContext) async throws -> User {
        let text = emailOrID.trimmingCharacters(in: .whitespaces)
        let id = UUID(uuidString: text)
        let user = try await database.connection(context) { connection -> User? in
            let rows = try await connection.query(
                "SELECT id, email, name, is_admin, created_at FROM users WHERE lower(email) = lower(\(text)) OR id = \(id)")
            for try await (id, email, name, admin, created) in rows.decode((UUID, String, String?, Bool, Date).self) {
                return User(id: id, email: email, name: name, isAdmin: admin, createdAt: created)
            }
            return nil
        }
        guard let user else { throw CreditsError(.notFound, "no user \(text.prefix(80)); create one with `tally users create --email …`") }
        return user
    }

    /// Logs in; with the client's `address`, refused while that address must wait (`AuthThrottle`), and a
    /// wrong password or unknown email counted against it.
    public func login(
        email: String, password: String, from address: String? = nil, userAgent: String? = nil, context: QueryContext
    ) async throws -> SessionGrant {
        if let address { try await throttle.checkLogin(email: email, from: address, context: context) }
        let found = try await database.connection(context) { connection -> (User, String, Bool)? in
            let rows = try await connection.query(
                """
                SELECT id, email, name, is_admin, created_at, password_hash, email_verified_at IS NOT NULL
                FROM users WHERE lower(email) = lower(\(email.trimmingCharacters(in: .whitespaces)))
                """)
            for try await (id, email, name, admin, created, hash, verified) in rows.decode((UUID, String, String?, Bool, Date, String, Bool).self) {
                return (User(id: id, email: email, name: name, isAdmin: admin, createdAt: created), hash, verified)
            }
            return nil
        }
        // Unknown emails cost the same bcrypt work as wrong passwords, so timing does not tell them apart: the
        // stand-in hash has the cost real hashes are made with, and both take one turn on the bcrypt pool (a
        // second turn to fetch the stand-in made unknown emails wait twice in its queue: 40% slower under load).
        // A user with no password of their own (a customer the product created, `Customers`) is stored with a
        // hash bcrypt cannot match (`noPassword`): it is answered after the same work as an unknown email.
        let cost = bcryptCost
        let stored = found.flatMap { $0.1.hasPrefix("$2") ? $0.1 : nil }
        let input = Self.bcryptInput(password)
        let ok = try await bcrypt.run { Bcrypt.verify(input, hash: stored ?? Self.dummyHash(cost: cost)) } && stored != nil
        guard ok, let user = found?.0 else {
            if let address { try await throttle.loginFailed(email: email, from: address, context: context) }
            throw CreditsError(.invalidCredentials, "the email or the password is wrong")
        }
        if let address { try await throttle.loginSucceeded(email: email, from: address, context: context) }
        guard found?.2 == true else {
            throw CreditsError(
                .emailUnverified,
                "confirm your email first: follow the link mailed to \(user.email) when you signed up (sign up again for a new one)")
        }
        return try await newSession(for: user, from: address, userAgent: userAgent, context: context)
    }

    /// Ends the session whose token has this hash (`tokenHash`); false when there was none.
    @discardableResult
    public func logout(tokenHash hash: String, context: QueryContext) async throws -> Bool {
        try await database.connection(context) { connection in
            var deleted = false
            for try await _ in try await connection.query("DELETE FROM sessions WHERE token_hash = \(hash) RETURNING id") {
                deleted = true
            }
            return deleted
        }
    }

    /// The user of the live session token whose hash (`tokenHash`) this is: not past its absolute end, and
    /// used within the idle timeout (this use slides it).
    public func user(forTokenHash hash: String, context: QueryContext) async throws -> User {
        let idle = sessionIdleTimeout.inSeconds
        let user = try await database.connection(context) { connection -> User? in
            for (id, email, name, admin, created) in try await connection.run(SessionUser(tokenHash: hash, idleSeconds: idle)) {
                return User(id: id, email: email, name: name, isAdmin: admin, createdAt: created)
            }
            return nil
        }
        guard let user else { throw CreditsError(.unauthenticated, "the session token is unknown or expired; log in again") }
        return user
    }

    func newSession(for user: User, from address: String?, userAgent: String?, context: QueryContext) async throws -> SessionGrant {
        let token = Token.make(prefix: Self.sessionTokenPrefix)
        let hash = Self.tokenHash(token)
        let seconds = sessionLifetime.inSeconds
        let agent = userAgent.map { String($0.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }.prefix(200).map(Character.init)) }
        let expires = try await database.connection(context) { connection -> Date in
            let rows = try await connection.query(
                """
                INSERT INTO sessions (user_id, token_hash, expires_at, client_address, user_agent)
                VALUES (\(user.id), \(hash), now() + make_interval(secs => \(seconds)), \(address), \(agent)) RETURNING expires_at
                """)
            for try await at in rows.decode(Date.self) { return at }
            return Date()
        }
        return SessionGrant(user: user, token: token, expiresAt: expires)
    }

    // MARK: - Helpers

    /// A hash no password matches (it is of random bytes), with `cost`: made once per cost and process.
    static func dummyHash(cost: UInt8) -> String {
        if let hash = dummyHashes.withLock({ $0[cost] }) { return hash }
        let hash = Bcrypt.hash(randomHex(bytes: 32), cost: cost)
        dummyHashes.withLock { $0[cost] = hash }
        return hash
    }

    private static let dummyHashes = Mutex<[UInt8: String]>([:])

    /// The password hash of a user who has no password: no bcrypt hash, so no password matches it, and a login
    /// with it costs the stand-in's work.
    public static let noPassword = "!no password: set one with a password reset"

    /// What is stored for a session token or API key: its SHA-256, hex.
    public static func tokenHash(_ token: String) -> String {
        sha256Hex(Data(token.utf8))
    }

    /// What bcrypt hashes for `password`. bcrypt reads only 72 bytes, so a longer password (or one that looks
    /// like this function's own output) is hashed as `sha256:` and its SHA-256 in base64 (51 bytes): every
    /// character counts, and a password of up to 72 bytes hashes as it always has.
    static func bcryptInput(_ password: String) -> String {
        guard password.utf8.count > 72 || password.hasPrefix("sha256:") else { return password }
        return "sha256:" + Data(SHA256.hash(data: Data(password.utf8))).base64EncodedString()
    }
}

/// The user of a live session, by the session token's hash: every request with a session token runs it. A
/// session is live before its absolute end and within the idle timeout ($2 seconds) of its last use; its
/// last use moves to now when it is older than $3 seconds (a minute, or a quarter of a shorter idle timeout),
/// so a busy session writes at most that often. Only a verified user has a live session (sessions start only
/// for them; this keeps it so for a session written by hand).
struct SessionUser: HotStatement {
    typealias Row = (UUID, String, String?, Bool, Date)
    static let sql = """
        WITH s AS (
            SELECT id, user_id, last_used_at FROM sessions
            WHERE token_hash = $1 AND expires_at > now() AND last_used_at > now() - make_interval(secs => $2)),
        touched AS (
            UPDATE sessions t SET last_used_at = now() FROM s WHERE t.id = s.id AND s.last_used_at < now() - make_interval(secs => $3))
        SELECT u.id, u.email, u.name, u.is_admin, u.created_at FROM s JOIN users u ON u.id = s.user_id
        WHERE u.email_verified_at IS NOT NULL
        """

    var tokenHash: String
    var idleSeconds: Double

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 3)
        bindings.append(tokenHash)
        bindings.append(idleSeconds)
        bindings.append(min(60, idleSeconds / 4))
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

