import Foundation
import PostgresNIO
import TallyPostgres

/// What a service key may do. `accounts:write` includes `accounts:read` (as a write key in Stripe's restricted
/// keys can read what it writes); the others stand alone.
public enum ServiceScope: String, Sendable, Codable, CaseIterable, Comparable {
    /// Grant credits to any account (`POST /v1/customers/{id}/grants`, `POST /v1/admin/grants`).
    case grantsWrite = "grants:write"
    /// Read customers, balances, ledgers and keys.
    case accountsRead = "accounts:read"
    /// Create customers (and read them).
    case accountsWrite = "accounts:write"
    /// Create and revoke customers' API keys.
    case keysWrite = "keys:write"
    /// Manage webhook endpoints.
    case webhooksWrite = "webhooks:write"

    public static func < (a: ServiceScope, b: ServiceScope) -> Bool { a.rawValue < b.rawValue }

    /// Scopes from their names; invalid-input naming the unknown one and the known ones.
    public static func parse(_ names: [String]) throws -> [ServiceScope] {
        guard !names.isEmpty else {
            throw CreditsError(.invalidInput, "give at least one scope: \(allCases.map(\.rawValue).joined(separator: ", "))")
        }
        var scopes: Set<ServiceScope> = []
        for name in names {
            guard let scope = ServiceScope(rawValue: name) else {
                throw CreditsError(.invalidInput, "unknown scope \"\(name.prefix(40))\"; the scopes are \(allCases.map(\.rawValue).joined(separator: ", "))")
            }
            // The API document says the list holds each scope once; a repeated one is a mistake to show, not to fold.
            guard scopes.insert(scope).inserted else {
                throw CreditsError(.invalidInput, "scope \(scope.rawValue) is given twice; name each scope once")
            }
        }
        return scopes.sorted()
    }
}

/// A service key as listed: never the key itself, only its display prefix.
public struct ServiceKey: Sendable, Codable, Equatable {
    public var id: UUID
    public var name: String
    public var prefix: String
    public var scopes: [ServiceScope]
    public var createdAt: Date
    /// The admin who made it (nil when an operator did, or the admin's user was erased).
    public var createdBy: UUID?
    /// Who made it, in words: `admin …` or `operator … (tally keys create)`.
    public var createdByName: String
    public var lastUsedAt: Date?
    public var revokedAt: Date?

    enum CodingKeys: String, CodingKey {
        case id, name, prefix, scopes
        case createdAt = "created_at"
        case createdBy = "created_by"
        case createdByName = "created_by_name"
        case lastUsedAt = "last_used_at"
        case revokedAt = "revoked_at"
    }
}

/// A service key just created: `key` is shown this once.
public struct CreatedServiceKey: Sendable, Codable, Equatable {
    public var serviceKey: ServiceKey
    public var key: String

    enum CodingKeys: String, CodingKey {
        case serviceKey = "service_key"
        case key
    }
}

/// Who a service key is, once authenticated.
public struct ServiceKeyPrincipal: Sendable, Equatable {
    public var id: UUID
    public var name: String
    public var prefix: String
    public var scopes: Set<ServiceScope>
    /// How the admin audit log names the key (`service key NAME (PREFIX…)`), as its use rows do.
    public var actorName: String

    /// Whether the key holds `scope` (`accounts:write` holds `accounts:read`).
    public func allows(_ scope: ServiceScope) -> Bool {
        scopes.contains(scope) || (scope == .accountsRead && scopes.contains(.accountsWrite))
    }

    /// How the admin audit log names the key's acts.
    public func actor(requestID: String) -> Actor {
        Actor(userID: nil, name: actorName, requestID: requestID)
    }
}

/// One request made with a service key, as the admin audit log keeps it.
public struct ServiceKeyUse: Sendable {
    public var requestID: String
    public var method: String
    public var path: String

    public init(requestID: String, method: String, path: String) {
        self.requestID = requestID
        self.method = method
        self.path = path
    }
}

/// Service keys (`service_keys`): `tly_svc_` + 256 random bits + a checksum (`Token`), for the product's own
/// backend. Made by an admin or an operator (recorded in the admin audit log), stored as SHA-256, revoked at
/// once: no cache, every request asks the database, and that same statement writes the use to the audit log.
public struct ServiceKeys: Sendable {
    public static let tokenPrefix = "tly_svc_"
    public let database: Database

    public init(database: Database) {
        self.database = database
    }

    public func create(name: String, scopes: [String], by actor: Actor, context: QueryContext) async throws -> CreatedServiceKey {
        let name = try TextRules.checkName(name)
        let scopes = try ServiceScope.parse(scopes)
        let key = Token.make(prefix: Self.tokenPrefix)
        let prefix = String(key.prefix(Self.tokenPrefix.count + 6))
        let hash = Auth.tokenHash(key)
        return try await database.transaction(context) { connection in
            var created: ServiceKey?
            for try await (id, createdAt) in try await connection.query(
                """
                INSERT INTO service_keys (name, prefix, key_hash, scopes, created_by, created_by_name)
                VALUES (\(name), \(prefix), \(hash), \(scopes.map(\.rawValue)), \(actor.userID), \(actor.name)) RETURNING id, created_at
                """
            ).decode((UUID, Date).self) {
                created = ServiceKey(
                    id: id, name: name, prefix: prefix, scopes: scopes, createdAt: createdAt, createdBy: actor.userID,
                    createdByName: actor.name, lastUsedAt: nil, revokedAt: nil)
            }
            guard let created else { throw CreditsError(.invalidInput, "the service key was not created") }
            try await AdminAudit.record(
                "service-key.create", by: actor,
                subject: ["service_key_id": .string(created.id.lowercasedString), "name": .string(name), "scopes": .array(scopes.map { .string($0.rawValue) })],
                on: connection, logger: context.logger)
            return CreatedServiceKey(serviceKey: created, key: key)
        }
    }

    /// Every service key, the revoked ones too, oldest first.
    public func list(context: QueryContext) async throws -> [ServiceKey] {
        try await database.connection(context) { connection in
            var keys: [ServiceKey] = []
            for try await (id, name, prefix, scopes, created, by, byName, used, revoked) in try await connection.query(
                """
                SELECT id, name, prefix, scopes, created_at, created_by, created_by_name, last_used_at, revoked_at
                FROM service_keys ORDER BY created_at, id
                """
            ).decode((UUID, String, String, [String], Date, UUID?, String, Date?, Date?).self) {
                keys.append(ServiceKey(
                    id: id, name: name, prefix: prefix, scopes: scopes.compactMap(ServiceScope.init(rawValue:)).sorted(), createdAt: created,
                    createdBy: by, createdByName: byName, lastUsedAt: used, revokedAt: revoked))
            }
            return keys
        }
    }

    /// Revokes a service key at once (its next request is refused); revoking a revoked key changes nothing.
    public func revoke(_ id: UUID, by actor: Actor, context: QueryContext) async throws {
        try await database.transaction(context) { connection in
            var found: (String, Bool)?
            for try await row in try await connection.query(
                """
                UPDATE service_keys SET revoked_at = coalesce(revoked_at, now()), revoked_by_name = coalesce(revoked_by_name, \(actor.name))
                WHERE id = \(id) RETURNING name, revoked_at = now()
                """
            ).decode((String, Bool).self) { found = row }
            guard let (name, now) = found else {
                throw CreditsError(.notFound, "no service key \(id.lowercasedString); GET /v1/service-keys lists them")
            }
            if now {
                try await AdminAudit.record(
                    "service-key.revoke", by: actor, subject: ["service_key_id": .string(id.lowercasedString), "name": .string(name)],
                    on: connection, logger: context.logger)
            }
        }
    }

    /// The live key with this hash (`Auth.tokenHash`), and `use` written to the admin audit log by the same
    /// statement (with `last_used_at`, at most once a minute); unauthenticated when unknown or revoked.
    public func authenticate(keyHash hash: String, use: ServiceKeyUse, context: QueryContext) async throws -> ServiceKeyPrincipal {
        try await database.connection(context) { connection in
            for try await (id, name, prefix, scopes, actor) in try await connection.query(
                """
                WITH k AS (
                    SELECT id, name, prefix, scopes, last_used_at, 'service key ' || name || ' (' || prefix || '…)' AS actor
                    FROM service_keys WHERE key_hash = \(hash) AND revoked_at IS NULL
                ),
                used AS (
                    UPDATE service_keys s SET last_used_at = now() FROM k
                    WHERE s.id = k.id AND (k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute')
                ),
                audited AS (
                    INSERT INTO admin_audit (actor_user_id, actor, action, request_id, subject)
                    SELECT NULL, k.actor, 'service-key.use', \(use.requestID),
                        jsonb_build_object('service_key_id', k.id, 'method', \(use.method)::text, 'path', \(String(use.path.prefix(500)))::text)
                    FROM k
                )
                SELECT id, name, prefix, scopes, actor FROM k
                """
            ).decode((UUID, String, String, [String], String).self) {
                return ServiceKeyPrincipal(
                    id: id, name: name, prefix: prefix, scopes: Set(scopes.compactMap(ServiceScope.init(rawValue:))), actorName: actor)
            }
            throw CreditsError(.unauthenticated, "the service key is unknown or revoked")
        }
    }
}
