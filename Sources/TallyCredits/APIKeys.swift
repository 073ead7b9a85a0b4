import Foundation
import Synchronization
import PostgresNIO
import TallyPostgres

/// An API key as listed: never the key itself, only its display prefix.
public struct APIKey: Sendable, Codable, Equatable {
    public var id: UUID
    public var name: String
    public var prefix: String
    public var teamID: UUID?
    public var creditLimit: Int64?
    public var used: Int64
    public var createdAt: Date
    /// The user who made it; the key acts for them while they keep their access.
    public var createdBy: UUID
    public var revokedAt: Date?
    /// Why it was revoked: by its creator, by a team owner or admin, or its creator left the team.
    public var revokedReason: String?

    enum CodingKeys: String, CodingKey {
        case id, name, prefix, used
        case teamID = "team_id"
        case creditLimit = "credit_limit"
        case createdAt = "created_at"
        case createdBy = "created_by"
        case revokedAt = "revoked_at"
        case revokedReason = "revoked_reason"
    }
}

/// A key just created: `key` is shown this once.
public struct CreatedAPIKey: Sendable, Codable, Equatable {
    public var apiKey: APIKey
    public var key: String

    enum CodingKeys: String, CodingKey {
        case apiKey = "api_key"
        case key
    }
}

/// Who an API key acts for.
public struct APIKeyPrincipal: Sendable, Equatable {
    public var keyID: UUID
    public var userID: UUID
    public var teamID: UUID?
}

/// API keys: `tly_` + 256 random bits + a checksum (`Token`), stored as SHA-256 with a display prefix, revocable; each draws on its
/// owner's account (the team's when it has one) within an optional total `credit_limit` (`api_key_credits`).
public struct APIKeys: Sendable {
    public let database: Database
    let principals = PrincipalCache()

    public init(database: Database) {
        self.database = database
    }

    public init(client: PostgresClient) {
        self.init(database: Database(client))
    }

    public func create(name: String, teamID: UUID?, creditLimit: Int64?, by user: User, context: QueryContext) async throws -> CreatedAPIKey {
        let name = try TextRules.checkName(name)
        if let creditLimit, creditLimit < 0 { throw CreditsError(.invalidInput, "credit_limit cannot be negative") }
        if let teamID {
            let role = try await Teams(database: database).role(of: user, in: teamID, context: context)
            guard role == "owner" || role == "admin" else { throw CreditsError(.forbidden, "only the team's owners and admins create its API keys") }
        }
        let key = Token.make(prefix: "tly_")
        let prefix = String(key.prefix(12))
        let hash = Auth.tokenHash(key)
        // The database checks the creator's role again as it inserts, with the member row locked FOR SHARE
        // (migration 0012): a removal at the same moment either comes first (the insert is refused) or waits
        // and revokes this key too.
        return try await Teams.refusingFormerMembers { try await database.transaction(context) { connection in
            var created: APIKey?
            for try await (id, createdAt) in try await connection.query(
                "INSERT INTO api_keys (user_id, team_id, name, prefix, key_hash) VALUES (\(user.id), \(teamID), \(name), \(prefix), \(hash)) RETURNING id, created_at"
            ).decode((UUID, Date).self) {
                created = APIKey(
                    id: id, name: name, prefix: prefix, teamID: teamID, creditLimit: creditLimit, used: 0, createdAt: createdAt,
                    createdBy: user.id, revokedAt: nil, revokedReason: nil)
            }
            guard let created else { throw CreditsError(.invalidInput, "the key was not created") }
            try await connection.execute("INSERT INTO api_key_credits (api_key_id, user_id, credit_limit) VALUES (\(created.id), \(user.id), \(creditLimit))")
            return CreatedAPIKey(apiKey: created, key: key)
        } }
    }

    /// The keys `user` created, and every key that spends from a team `user` owns or administers.
    public func list(for user: User, context: QueryContext) async throws -> [APIKey] {
        try await keys(where: """
            k.user_id = \(user.id)
               OR k.team_id IN (SELECT team_id FROM team_members WHERE user_id = \(user.id) AND role IN ('owner', 'admin'))
            """, context: context)
    }

    /// The keys `condition` (on `api_keys k`) picks, oldest first, with what each has spent.
    func keys(where condition: PostgresQuery, context: QueryContext) async throws -> [APIKey] {
        let query = PostgresQuery(
            unsafeSQL: """
                SELECT k.id, k.name, k.prefix, k.team_id, c.credit_limit, COALESCE(c.used, 0), k.created_at, k.user_id,
                       k.revoked_at, k.revoked_reason
                FROM api_keys k LEFT JOIN api_key_credits c ON c.api_key_id = k.id
                WHERE \(condition.sql)
                ORDER BY k.created_at, k.id
                """,
            binds: condition.binds)
        return try await database.connection(context) { connection in
            var keys: [APIKey] = []
            for try await (id, name, prefix, team, limit, used, created, creator, revoked, reason) in try await connection.query(query)
                .decode((UUID, String, String, UUID?, Int64?, Int64, Date, UUID, Date?, String?).self)
            {
                keys.append(APIKey(
                    id: id, name: name, prefix: prefix, teamID: team, creditLimit: limit, used: used, createdAt: created,
                    createdBy: creator, revokedAt: revoked, revokedReason: reason))
            }
            return keys
        }
    }

    /// Revokes at once a key `user` made, or one that spends from a team `user` owns or administers;
    /// not-found for any other.
    public func revoke(_ id: UUID, by user: User, context: QueryContext) async throws {
        try await database.connection(context) { connection in
            var found = false
            for try await _ in try await connection.query(
                """
                UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()),
                    revoked_reason = COALESCE(revoked_reason, CASE WHEN user_id = \(user.id) THEN 'revoked by its creator' ELSE 'revoked by a team owner or admin' END),
                    revoked_by = COALESCE(revoked_by, \(user.id))
                WHERE id = \(id) AND (user_id = \(user.id)
                   OR team_id IN (SELECT team_id FROM team_members WHERE user_id = \(user.id) AND role IN ('owner', 'admin')))
                RETURNING id
                """
            ) { found = true }
            guard found else { throw CreditsError(.notFound, "no API key \(id.lowercasedString) among yours or your teams'; GET /v1/api-keys lists them") }
        }
    }

    /// The keys that spend from `owner`'s account (a user's own keys, not their team keys; or a team's).
    public func list(spendingFrom owner: AccountOwner, context: QueryContext) async throws -> [APIKey] {
        switch owner {
        case .user(let id): try await keys(where: "k.user_id = \(id) AND k.team_id IS NULL", context: context)
        case .team(let id): try await keys(where: "k.team_id = \(id)", context: context)
        }
    }

    /// Revokes at once a key that spends from `owner`'s account, by `actor` (a service key); not-found for any
    /// other key.
    public func revoke(_ id: UUID, spendingFrom owner: AccountOwner, by actor: Actor, context: QueryContext) async throws {
        let user: UUID? = if case .user(let id) = owner { id } else { nil }
        let team: UUID? = if case .team(let id) = owner { id } else { nil }
        try await database.connection(context) { connection in
            var found = false
            for try await _ in try await connection.query(
                """
                UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()),
                    revoked_reason = COALESCE(revoked_reason, 'revoked by ' || \(actor.name))
                WHERE id = \(id) AND ((user_id = \(user) AND team_id IS NULL) OR team_id = \(team))
                RETURNING id
                """
            ) { found = true }
            guard found else { throw CreditsError(.notFound, "no API key \(id.lowercasedString) spends from this customer's account") }
        }
    }

    /// Who the key with this hash (`Auth.tokenHash`) acts for, from a small in-memory cache when it was seen
    /// recently, else as `authenticate`.
    /// Only for callers that check the key is still live in the same statement that uses it, as the spend
    /// (`tally_apply` refuses a revoked key) and the balance and ledger reads do: a revocation must take
    /// effect at once.
    public func principal(forKeyHash hash: String, context: QueryContext) async throws -> APIKeyPrincipal {
        if let known = principals.get(hash) { return known }
        let principal = try await authenticate(keyHash: hash, context: context)
        principals.set(hash, principal)
        return principal
    }

    /// Forgets a cached key, by its hash (after the consume path found it revoked).
    public func forget(keyHash hash: String) {
        principals.remove(hash)
    }

    /// The live key `key` is; unauthenticated when unknown or revoked.
    public func authenticate(_ key: String, context: QueryContext) async throws -> APIKeyPrincipal {
        try await authenticate(keyHash: Auth.tokenHash(key), context: context)
    }

    /// `authenticate` by the key's hash (`Auth.tokenHash`).
    public func authenticate(keyHash hash: String, context: QueryContext) async throws -> APIKeyPrincipal {
        try await database.connection(context) { connection in
            for (id, user, team) in try await connection.run(LiveKey(keyHash: hash)) {
                return APIKeyPrincipal(keyID: id, userID: user, teamID: team)
            }
            throw CreditsError(.unauthenticated, "the API key is unknown or revoked")
        }
    }
}

/// Key hash → principal, for `APIKeys.principal(forKeyHash:)`: at most `capacity` entries, emptied when full.
final class PrincipalCache: Sendable {
    private let entries = Mutex<[String: APIKeyPrincipal]>([:])
    let capacity = 10_000

    func get(_ hash: String) -> APIKeyPrincipal? {
        entries.withLock { $0[hash] }
    }

    func set(_ hash: String, _ principal: APIKeyPrincipal) {
        entries.withLock { entries in
            if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
            entries[hash] = principal
        }
    }

    func remove(_ hash: String) {
        entries.withLock { $0[hash] = nil }
    }
}

/// A live (not revoked) API key, by its hash.
struct LiveKey: HotStatement {
    typealias Row = (UUID, UUID, UUID?)
    static let sql = "SELECT id, user_id, team_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"

    var keyHash: String

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 1)
        bindings.append(keyHash)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}
