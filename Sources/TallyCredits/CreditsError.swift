/// Everything that can go wrong in `TallyCredits`: a stable code, and a message that says what to do.
/// The HTTP layer maps codes to statuses in one place.
public struct CreditsError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Code: String, Sendable {
        case invalidInput = "invalid-input"
        case emailTaken = "email-taken"
        case invalidCredentials = "invalid-credentials"
        case unauthenticated = "unauthenticated"
        case forbidden = "forbidden"
        case notFound = "not-found"
        case conflict = "conflict"
        case insufficientCredits = "insufficient-credits"
        case keyLimitExceeded = "key-limit-exceeded"
        case idempotencyKeyReused = "idempotency-key-reused"
        case idempotencyInProgress = "idempotency-request-in-progress"
        /// The database gave no connection in time: nothing was done, retry shortly.
        case databaseUnavailable = "database-unavailable"
        /// Too many failed logins (or sign-ups) from this address: wait `retryAfter` seconds.
        case tooManyAttempts = "too-many-attempts"
        /// More password hashing is queued than the server takes at once: nothing was done, retry shortly.
        case serverBusy = "server-busy"
        /// The password is right but the email has not been confirmed: follow the mailed link first.
        case emailUnverified = "email-unverified"
        /// The product's keys for its session tokens (`--trust-jwt`) cannot be had now: retry shortly.
        case productKeysUnavailable = "product-keys-unavailable"
    }

    public var code: Code
    public var message: String
    /// Seconds to wait before trying again, when waiting helps.
    public var retryAfter: Int?

    /// The error this one was made from (a PostgreSQL error, a file system error), kept for logs and callers;
    /// `message` already says what it means for the user.
    public var underlying: (any Error & Sendable)?

    public init(_ code: Code, _ message: String, retryAfter: Int? = nil, underlying: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.retryAfter = retryAfter
        self.underlying = underlying
    }

    /// Equal when code, message and wait are (the underlying error is not compared).
    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message && lhs.retryAfter == rhs.retryAfter
    }

    public var description: String { message }
}
