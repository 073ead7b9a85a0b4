import Foundation
import HummingbirdBcrypt
import PostgresNIO
import TallyPostgres

/// Password reset by mail: a single-use token, valid for `resetLifetime`, mailed through the outbox in the
/// transaction that stores its hash; using it sets the password and ends every session of the account.
extension Auth {
    public static let resetTokenPrefix = "tly_reset_"
    public static let resetLifetime: Duration = .seconds(30 * 60)

    /// Mails a reset link to `email` when an account has it; says nothing either way (the caller answers the
    /// same). Requests from `address` count as sign-ups do (`AuthThrottle`), so mail cannot be flooded.
    public func requestPasswordReset(email: String, from address: String?, context: QueryContext) async throws {
        if let address { try await throttle.signup(from: address, context: context) }
        let email = email.trimmingCharacters(in: .whitespaces)
        let token = Token.make(prefix: Self.resetTokenPrefix)
        let base = publicURL
        try await database.transaction(context) { connection in
            var found: (UUID, String)?
            for try await row in try await connection.query(
                "SELECT id, email FROM users WHERE lower(email) = lower(\(email))"
            ).decode((UUID, String).self) { found = row }
            guard let (user, mailbox) = found else { return }
            try await connection.execute(
                """
                INSERT INTO password_resets (token_hash, user_id, expires_at)
                VALUES (\(Self.tokenHash(token)), \(user), now() + make_interval(secs => \(Self.resetLifetime.inSeconds)))
                """)
            try await Outbox.enqueue(Mail(
                to: mailbox, subject: "Reset your Tally password",
                text: """
                    Someone (we hope you) asked to reset the password of the Tally account \(mailbox).

                    To choose a new password, open:
                    \(base)/reset-password?token=\(token)

                    or send:
                    curl -X POST \(base)/v1/auth/password-reset/confirm -H 'Content-Type: application/json' \\
                      -d '{"token": "\(token)", "new_password": "your new password"}'

                    The link works once, for 30 minutes. A new password ends every session of the account.
                    If you did not ask, ignore this mail: your password stays as it is.
                    """), on: connection)
        }
    }

    /// Sets a new password with a reset token: single use, unexpired. Ends every session of the account.
    /// How many sessions ended.
    public func resetPassword(token: String, newPassword: String, context: QueryContext) async throws -> Int {
        try TextRules.checkPassword(newPassword)
        let refused = CreditsError(.invalidInput, "the reset token is unknown, used or expired; ask for a new one with POST /v1/auth/password-reset")
        guard token.hasPrefix(Self.resetTokenPrefix), Token.mayBeGenuine(token, prefix: Self.resetTokenPrefix) else { throw refused }
        // No bcrypt work for a token that cannot be used (anyone can make one with a right checksum); the
        // update below checks again, atomically, before it takes the token.
        let usable = try await database.connection(context) { connection in
            for try await _ in try await connection.query(
                "SELECT 1 FROM password_resets WHERE token_hash = \(Self.tokenHash(token)) AND used_at IS NULL AND expires_at > now()"
            ) { return true }
            return false
        }
        guard usable else { throw refused }
        let cost = bcryptCost
        let input = Self.bcryptInput(newPassword)
        let hash = try await bcrypt.run { Bcrypt.hash(input, cost: cost) }
        return try await database.transaction(context) { connection in
            var user: UUID?
            for try await id in try await connection.query(
                """
                UPDATE password_resets SET used_at = now()
                WHERE token_hash = \(Self.tokenHash(token)) AND used_at IS NULL AND expires_at > now()
                RETURNING user_id
                """
            ).decode(UUID.self) { user = id }
            guard let user else { throw refused }
            // The token came through the mailbox, so following it proves the address too.
            try await connection.execute(
                "UPDATE users SET password_hash = \(hash), email_verified_at = coalesce(email_verified_at, now()) WHERE id = \(user)")
            // Any other reset link of the account dies with this one.
            try await connection.execute("UPDATE password_resets SET used_at = now() WHERE user_id = \(user) AND used_at IS NULL")
            return try await Self.endSessions(of: user, keeping: nil, on: connection)
        }
    }
}
