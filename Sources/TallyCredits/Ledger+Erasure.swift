import Foundation
import PostgresNIO
import TallyPostgres

/// What erasing a user did.
public struct ErasedUser: Sendable, Codable, Equatable {
    public var userID: UUID
    /// Credits the closing took off the account (each grant's remainder, as `expire` entries).
    public var forfeited: Int64
    /// The account's ledger rows, all kept.
    public var ledgerEntries: Int64
    public var revokedKeys: Int
    public var endedSessions: Int
    public var leftTeams: Int

    enum CodingKeys: String, CodingKey {
        case forfeited
        case userID = "user_id"
        case ledgerEntries = "ledger_entries"
        case revokedKeys = "revoked_keys"
        case endedSessions = "ended_sessions"
        case leftTeams = "left_teams"
    }
}

/// Erasing a person while the ledger keeps its rows: the account is closed with ledger entries, access ends,
/// and the user row stays with nothing personal in it (an `erased-…@erased.invalid` address, no name, a
/// password nobody knows), so the ledger, grants and the admin audit log still point at it.
extension Ledger {
    /// Erases `user`'s personal data, in one transaction: their keys are revoked (their holds released), they
    /// leave every team (refused while they are the last owner of a team with other members), their account's
    /// remaining credits expire with "account closed" entries, their sessions, reset and verification links and
    /// pending invitations go, and mail to them is blanked in the outbox. Recorded in the admin audit log
    /// without the email (that log is append-only).
    public func eraseUser(_ user: UUID, by actor: Actor, context: QueryContext) async throws -> ErasedUser {
        let erasedAddress = "erased-\(user.uuidString.lowercased())@erased.invalid"
        let unusable = Auth.noPassword
        return try await database.transaction(context) { connection in
            var found: (String, Bool)?
            for try await row in try await connection.query(
                "SELECT email, erased_at IS NOT NULL FROM users WHERE id = \(user) FOR UPDATE"
            ).decode((String, Bool).self) { found = row }
            guard let (email, erased) = found else { throw CreditsError(.notFound, "no user \(user.lowercasedString)") }
            guard !erased else { throw CreditsError(.conflict, "user \(user.lowercasedString) was erased already") }
            for try await team in try await connection.query(
                """
                SELECT t.name FROM team_members m JOIN teams t ON t.id = m.team_id
                WHERE m.user_id = \(user) AND m.role = 'owner'
                  AND NOT EXISTS (SELECT 1 FROM team_members o WHERE o.team_id = m.team_id AND o.role = 'owner' AND o.user_id <> \(user))
                  AND EXISTS (SELECT 1 FROM team_members o WHERE o.team_id = m.team_id AND o.user_id <> \(user))
                """
            ).decode(String.self) {
                throw CreditsError(
                    .conflict, "\(email) is the last owner of the team \(team), which has other members: make one of them an owner first")
            }

            var revoked = 0
            for try await _ in try await connection.query(
                """
                UPDATE api_keys SET revoked_at = now(), revoked_reason = 'its creator''s account was closed'
                WHERE user_id = \(user) AND revoked_at IS NULL RETURNING id
                """
            ) { revoked += 1 }
            var left = 0
            for try await _ in try await connection.query("DELETE FROM team_members WHERE user_id = \(user) RETURNING team_id") { left += 1 }

            // The account closes with ledger entries: the revoked keys' holds are released by the lock, then
            // every grant's remainder expires now.
            var forfeited: Int64 = 0
            var entries: Int64 = 0
            var account: UUID?
            for try await id in try await connection.query("SELECT id FROM user_credits WHERE user_id = \(user)").decode(UUID.self) { account = id }
            if let account {
                // Nothing more is granted to a closed account: its schedules end (before the account's lock, in the
                // order issuing takes them) and its top-up rules go (after it, in the order spends take them).
                try await connection.execute("UPDATE recurring_grants SET ended_at = now() WHERE account_id = \(account) AND ended_at IS NULL")
                let (balance, held) = try await lockAccount(account, on: connection)
                try await connection.execute("DELETE FROM topup_rules WHERE account_id = \(account)")
                try await connection.execute(
                    "UPDATE credit_grants SET expires_at = now() WHERE account_id = \(account) AND remaining > 0 AND (expires_at IS NULL OR expires_at > now())")
                var after = balance
                for try await value in try await connection.query(
                    """
                    UPDATE user_credits SET balance = tally_expire_grants(id, \(balance), \(held), 'account closed: personal data erased'), updated_at = now()
                    WHERE id = \(account) RETURNING balance
                    """).decode(Int64.self) { after = value }
                forfeited = balance - after
                for try await count in try await connection.query(
                    "SELECT count(*) FROM credit_transactions WHERE account_id = \(account)"
                ).decode(Int64.self) { entries = count }
            }

            var sessions = 0
            for try await _ in try await connection.query("DELETE FROM sessions WHERE user_id = \(user) RETURNING id") { sessions += 1 }
            try await connection.execute("DELETE FROM password_resets WHERE user_id = \(user)")
            try await connection.execute("DELETE FROM email_verifications WHERE user_id = \(user)")
            try await connection.execute(
                """
                UPDATE team_invitations SET email = \(erasedAddress),
                    revoked_at = CASE WHEN accepted_at IS NULL THEN coalesce(revoked_at, now()) ELSE revoked_at END
                WHERE lower(email) = lower(\(email))
                """)
            try await connection.execute(
                """
                UPDATE outbox SET payload = payload || jsonb_build_object('to', \(erasedAddress)::text, 'text', '(erased with the account)'),
                    delivered_at = coalesce(delivered_at, now()), last_error = CASE WHEN delivered_at IS NULL THEN 'not sent: the account was erased' ELSE last_error END
                WHERE kind = 'mail' AND lower(payload->>'to') = lower(\(email))
                """)
            try await connection.execute(
                """
                UPDATE users SET email = \(erasedAddress), name = NULL, password_hash = \(unusable), is_admin = false, external_id = NULL, erased_at = now()
                WHERE id = \(user)
                """)
            try await AdminAudit.record(
                "erase_user", by: actor,
                subject: [
                    "user_id": .string(user.lowercasedString), "forfeited": .integer(forfeited), "ledger_entries_kept": .integer(entries),
                    "revoked_keys": .integer(Int64(revoked)), "left_teams": .integer(Int64(left)),
                ], on: connection, logger: context.logger)
            return ErasedUser(
                userID: user, forfeited: forfeited, ledgerEntries: entries, revokedKeys: revoked, endedSessions: sessions, leftTeams: left)
        }
    }
}
