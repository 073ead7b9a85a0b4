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
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
