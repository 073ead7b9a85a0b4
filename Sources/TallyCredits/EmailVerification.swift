import Foundation
import HummingbirdBcrypt
import PostgresNIO
import TallyPostgres

/// Sign-up that lists nobody: every sign-up answers the same. A new address gets an unverified user and a
/// mail with a single-use link (`verifyEmail`) that proves the address and starts the first session; an
/// address that already has a verified account gets a mail saying someone tried. A second sign-up for an
/// address nobody has proven yet mails another link, carrying the password chosen with that sign-up, so
/// whoever follows a link sets the password they chose and nobody can pre-register someone else's address.
extension Auth {
    public static let verificationTokenPrefix = "tly_verify_"
    public static let verificationLifetime: Duration = .seconds(24 * 3600)
    /// Unverified accounts whose links have all expired are deleted this long after sign-up (maintenance).
    public static let unverifiedLifetime: Duration = .seconds(7 * 24 * 3600)

    /// Signs up `email`: checks the input, hashes the password (always, so a known address costs the same),
    /// and mails a verification link or a "someone tried" notice from the outbox, in one transaction. Says
    /// nothing about which happened. Sign-ups from `address` are counted (`AuthThrottle`).
    public func signup(
        email: String, password: String, name: String?, from address: String? = nil, context: QueryContext
    ) async throws {
        if let address { try await throttle.signup(from: address, context: context) }
        let email = try TextRules.checkEmail(email)
        try TextRules.checkPassword(password)
        let name = try name.map { try TextRules.checkName($0) }
        let cost = bcryptCost
        let input = Self.bcryptInput(password)
        let hash = try await bcrypt.run { Bcrypt.hash(input, cost: cost) }
        let token = Token.make(prefix: Self.verificationTokenPrefix)
        let base = publicURL
        let origin = address.map { " It was asked for from \($0)." } ?? ""
        try await database.transaction(context) { connection in
            // A new address inserts; a known one (any spelling) conflicts and is read, locked against a
            // sign-up or verification of the same address running at the same time.
            var account: (id: UUID, mailbox: String, verified: Bool)?
            for try await id in try await connection.query(
                "INSERT INTO users (email, name, password_hash) VALUES (\(email), \(name), \(hash)) ON CONFLICT DO NOTHING RETURNING id"
            ).decode(UUID.self) { account = (id, email, false) }
            if account == nil {
                for try await (id, mailbox, verified) in try await connection.query(
                    "SELECT id, email, email_verified_at IS NOT NULL FROM users WHERE lower(email) = lower(\(email)) FOR UPDATE"
                ).decode((UUID, String, Bool).self) { account = (id, mailbox, verified) }
            }
            guard let account else { throw CreditsError(.conflict, "the address changed during sign-up; try again") }
            if account.verified {
                try await Outbox.enqueue(Mail(
                    to: account.mailbox, subject: "Someone tried to sign up to Tally with your address",
                    text: """
                        Someone (perhaps you) tried to sign up to Tally with \(account.mailbox), which already has an account.\(origin)

                        Nothing changed. To use your account, log in (POST \(base)/v1/auth/login).
                        Forgot the password? Ask for a reset link: POST \(base)/v1/auth/password-reset with {"email": "\(account.mailbox)"}.
                        If it was not you, you can ignore this mail.
                        """), on: connection)
                return
            }
            try await connection.execute(
                """
                INSERT INTO email_verifications (token_hash, user_id, password_hash, client_address, expires_at)
                VALUES (\(Self.tokenHash(token)), \(account.id), \(hash), \(address),
                        now() + make_interval(secs => \(Self.verificationLifetime.inSeconds)))
                """)
            try await Outbox.enqueue(Mail(
                to: account.mailbox, subject: "Confirm your email for Tally",
                text: """
                    Someone (we hope you) signed up to Tally with \(account.mailbox).\(origin)

                    To confirm the address and log in, open:
                    \(base)/verify-email?token=\(token)

                    or send:
                    curl -X POST \(base)/v1/auth/verify-email -H 'Content-Type: application/json' \\
                      -d '{"token": "\(token)"}'

                    The link works once, for 24 hours, and sets the password chosen with this sign-up.
                    If you did not sign up, ignore this mail: nothing happens unless the link is followed.
                    """), on: connection)
        }
    }

    /// Follows a verification link: marks the address verified, sets the password chosen with its sign-up,
    /// kills every other link of the account, and starts a session. Single use, unexpired.
    public func verifyEmail(token: String, from address: String? = nil, userAgent: String? = nil, context: QueryContext) async throws -> SessionGrant {
        let refused = CreditsError(
            .invalidInput, "the verification link is unknown, used or expired; sign up again for a new one, or log in if the address is verified")
        guard Token.mayBeGenuine(token, prefix: Self.verificationTokenPrefix) else { throw refused }
        let user = try await database.transaction(context) { connection -> User in
            var taken: (UUID, String)?
            for try await row in try await connection.query(
                """
                UPDATE email_verifications SET used_at = now()
                WHERE token_hash = \(Self.tokenHash(token)) AND used_at IS NULL AND expires_at > now()
                RETURNING user_id, password_hash
                """
            ).decode((UUID, String).self) { taken = row }
            guard let (id, hash) = taken else { throw refused }
            try await connection.execute("UPDATE email_verifications SET used_at = now() WHERE user_id = \(id) AND used_at IS NULL")
            for try await (id, email, name, admin, created) in try await connection.query(
                """
                UPDATE users SET email_verified_at = now(), password_hash = \(hash)
                WHERE id = \(id) AND email_verified_at IS NULL
                RETURNING id, email, name, is_admin, created_at
                """
            ).decode((UUID, String, String?, Bool, Date).self) {
                return User(id: id, email: email, name: name, isAdmin: admin, createdAt: created)
            }
            throw refused
        }
        return try await newSession(for: user, from: address, userAgent: userAgent, context: context)
    }

    /// Deletes accounts never verified, `unverifiedLifetime` after sign-up once none of their links works,
    /// and verification links a day past their end (maintenance). An account with a ledger is kept.
    @discardableResult
    public func purgeUnverified(context: QueryContext) async throws -> Int {
        try await database.connection(context) { connection in
            try await connection.execute(
                "DELETE FROM email_verifications WHERE expires_at < now() - interval '1 day'")
            var deleted = 0
            for try await _ in try await connection.query(
                """
                DELETE FROM users u
                WHERE u.email_verified_at IS NULL
                  AND u.created_at < now() - make_interval(secs => \(Self.unverifiedLifetime.inSeconds))
                  AND NOT EXISTS (SELECT 1 FROM email_verifications v WHERE v.user_id = u.id AND v.expires_at > now())
                  AND NOT EXISTS (SELECT 1 FROM user_credits c WHERE c.user_id = u.id)
                RETURNING u.id
                """
            ) { deleted += 1 }
            return deleted
        }
    }
}
