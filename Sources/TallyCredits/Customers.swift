import Foundation
import PostgresNIO
import TallyPostgres

/// One of the product's customers as Tally holds it: a user or a team, named by the product's own id
/// (`external_id`), so the product never stores Tally's ids.
public struct Customer: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable {
        case user, team
    }

    public var externalID: String
    public var kind: Kind
    /// Tally's id of the user or team.
    public var id: UUID
    /// A user's email.
    public var email: String?
    public var name: String?
    /// A team's first owner, by external id (when the owner is a customer too).
    public var owner: String?
    public var createdAt: Date

    enum CodingKeys: String, CodingKey {
        case kind, id, email, name, owner
        case externalID = "external_id"
        case createdAt = "created_at"
    }

    public var accountOwner: AccountOwner {
        switch kind {
        case .user: .user(id)
        case .team: .team(id)
        }
    }
}

/// What `PUT /v1/customers/{external_id}` asks for: a user (with an email) or a team (with a name, and
/// optionally an owner that is a user customer already).
public struct CustomerRequest: Sendable {
    public var kind: Customer.Kind
    public var email: String?
    public var name: String?
    public var owner: String?

    public init(kind: Customer.Kind, email: String? = nil, name: String? = nil, owner: String? = nil) {
        self.kind = kind
        self.email = email
        self.name = name
        self.owner = owner
    }
}

/// The product's customers, by their external ids (users' and teams' `external_id`, never the same for a user
/// and a team: migration 0021's trigger).
public struct Customers: Sendable {
    public let database: Database

    public init(database: Database) {
        self.database = database
    }

    /// Creates the customer, or answers the one this external id names already (`created` false) without
    /// changing it: a retried or repeated call is harmless. Conflict when the id names a customer of the other
    /// kind, or a user customer's email belongs to another user. Users made here have no password (they sign
    /// in to Tally, if ever, through a password reset) and count as verified: the product vouches for them.
    public func createOrGet(
        _ externalID: String, _ request: CustomerRequest, by actor: Actor, context: QueryContext
    ) async throws -> (customer: Customer, created: Bool) {
        let externalID = try TextRules.checkExternalID(externalID)
        let email = try request.email.map { try TextRules.checkEmail($0) }
        let name = try request.name.map { try TextRules.checkName($0) }
        let owner = try request.owner.map { try TextRules.checkExternalID($0, field: "owner") }
        switch request.kind {
        case .user:
            guard email != nil else { throw CreditsError(.invalidInput, "a user customer needs an email") }
            guard owner == nil else { throw CreditsError(.invalidInput, "owner is for team customers; drop it") }
        case .team:
            guard name != nil else { throw CreditsError(.invalidInput, "a team customer needs a name") }
            guard email == nil else { throw CreditsError(.invalidInput, "email is for user customers; drop it") }
        }
        return try await database.transaction(context) { connection in
            // The lock the database's trigger takes: two calls for one id take turns, and the second finds the first's.
            try await connection.execute("SELECT pg_advisory_xact_lock(hashtextextended('external_id:' || \(externalID), 7365))")
            if let existing = try await Self.find(externalID, on: connection) {
                guard existing.kind == request.kind else {
                    throw CreditsError(.conflict, "customer \(externalID) is a \(existing.kind.rawValue), not a \(request.kind.rawValue)")
                }
                return (existing, false)
            }
            let customer: Customer
            switch request.kind {
            case .user:
                var made: Customer?
                do {
                    for try await (id, created) in try await connection.query(
                        """
                        INSERT INTO users (email, name, password_hash, email_verified_at, external_id)
                        VALUES (\(email), \(name), \(Auth.noPassword), now(), \(externalID)) RETURNING id, created_at
                        """
                    ).decode((UUID, Date).self) {
                        made = Customer(externalID: externalID, kind: .user, id: id, email: email, name: name, owner: nil, createdAt: created)
                    }
                } catch let error as PSQLError where error.serverInfo?[.sqlState] == "23505" {
                    throw CreditsError(
                        .conflict, "another user has the email \(email ?? ""): a customer's email must be its own; give this customer another, or leave the other user's as it is",
                        underlying: error)
                }
                guard let made else { throw CreditsError(.invalidInput, "the customer was not created") }
                customer = made
            case .team:
                var ownerID: UUID?
                if let owner {
                    guard let found = try await Self.find(owner, on: connection), found.kind == .user else {
                        throw CreditsError(.notFound, "no user customer \(owner) to own the team: PUT /v1/customers/\(owner) with kind user first")
                    }
                    ownerID = found.id
                }
                var made: Customer?
                for try await (id, created) in try await connection.query(
                    "INSERT INTO teams (name, external_id) VALUES (\(name), \(externalID)) RETURNING id, created_at"
                ).decode((UUID, Date).self) {
                    made = Customer(externalID: externalID, kind: .team, id: id, email: nil, name: name, owner: owner, createdAt: created)
                }
                guard let made else { throw CreditsError(.invalidInput, "the customer was not created") }
                if let ownerID {
                    try await connection.execute("INSERT INTO team_members (team_id, user_id, role) VALUES (\(made.id), \(ownerID), 'owner')")
                }
                customer = made
            }
            var subject: [String: JSONValue] = [
                "external_id": .string(externalID), "kind": .string(customer.kind.rawValue), "id": .string(customer.id.lowercasedString),
            ]
            if let owner { subject["owner"] = .string(owner) }
            try await AdminAudit.record("customer.create", by: actor, subject: subject, on: connection, logger: context.logger)
            return (customer, true)
        }
    }

    /// The customer this external id names; not-found when none.
    public func find(_ externalID: String, context: QueryContext) async throws -> Customer {
        let externalID = try TextRules.checkExternalID(externalID)
        let found = try await database.connection(context) { try await Self.find(externalID, on: $0) }
        guard let found else {
            throw CreditsError(.notFound, "no customer \(externalID); create it with PUT /v1/customers/\(externalID)")
        }
        return found
    }

    static func find(_ externalID: String, on connection: DatabaseConnection) async throws -> Customer? {
        for try await (kind, id, email, name, owner, created) in try await connection.query(
            """
            SELECT 'user', u.id, u.email, u.name, NULL, u.created_at FROM users u WHERE u.external_id = \(externalID)
            UNION ALL
            SELECT 'team', t.id, NULL, t.name,
                (SELECT o.external_id FROM team_members m JOIN users o ON o.id = m.user_id
                 WHERE m.team_id = t.id AND m.role = 'owner' ORDER BY m.created_at, m.user_id LIMIT 1),
                t.created_at
            FROM teams t WHERE t.external_id = \(externalID)
            """
        ).decode((String, UUID, String?, String?, String?, Date).self) {
            return Customer(
                externalID: externalID, kind: Customer.Kind(rawValue: kind) ?? .user, id: id, email: email, name: name, owner: owner, createdAt: created)
        }
        return nil
    }

    /// The user customer with this external id, as a user who is not an admin (the product vouches for its users,
    /// never for Tally's admins); nil when no user has it (a team may). One statement: a product's token
    /// (`--trust-jwt`) is looked up with it on every request.
    public func user(externalID: String, context: QueryContext) async throws -> User? {
        try await database.connection(context) { connection in
            for try await (id, email, name, created) in try await connection.query(
                "SELECT id, email, name, created_at FROM users WHERE external_id = \(externalID)"
            ).decode((UUID, String, String?, Date).self) {
                return User(id: id, email: email, name: name, isAdmin: false, createdAt: created)
            }
            return nil
        }
    }

    /// Who a key made for `customer` acts for: the user, or the team's first owner; conflict for a team with
    /// no owner (its keys need one: a team key ends when its maker leaves the team).
    public func keyHolder(of customer: Customer, context: QueryContext) async throws -> User {
        try await database.connection(context) { connection in
            let sql: PostgresQuery = switch customer.kind {
            case .user: "SELECT id, email, name, is_admin, created_at FROM users WHERE id = \(customer.id)"
            case .team:
                """
                SELECT u.id, u.email, u.name, u.is_admin, u.created_at FROM team_members m JOIN users u ON u.id = m.user_id
                WHERE m.team_id = \(customer.id) AND m.role = 'owner' ORDER BY m.created_at, m.user_id LIMIT 1
                """
            }
            for try await (id, email, name, admin, created) in try await connection.query(sql).decode((UUID, String, String?, Bool, Date).self) {
                return User(id: id, email: email, name: name, isAdmin: admin, createdAt: created)
            }
            throw CreditsError(
                .conflict, "team customer \(customer.externalID) has no owner, and its API keys act for one: create the team with an owner (a user customer)")
        }
    }
}
