import Foundation
import PostgresNIO
import TallyPostgres

/// The operator commands' work (`tally users create`, `tally credits grant`, `tally keys create`), as library
/// calls: users and teams named the way an operator names them (an email or an id), times as ISO 8601 text.
public struct Operations: Sendable {
    public let database: Database
    public let context: QueryContext

    public init(database: Database, context: QueryContext) {
        self.database = database
        self.context = context
    }

    public init(client: PostgresClient, context: QueryContext) {
        self.init(database: Database(client), context: context)
    }

    /// A user (an admin with `admin`); email-taken when the email is in use.
    public func createUser(email: String, password: String, name: String?, admin: Bool) async throws -> User {
        try await Auth(database: database).createUser(email: email, password: password, name: name, admin: admin, context: context)
    }

    /// Grants `amount` to exactly one of a user (by email or id) and a team (by id). `expires` is ISO 8601.
    public func grant(
        user: String?, team: String?, amount: Int64, expires: String? = nil, priority: Int = 0, description: String
    ) async throws -> CreditGrant {
        let expiresAt = try expires.map { try TextRules.time($0, field: "--expires") }
        let owner: AccountOwner
        switch (user, team) {
        case (let user?, nil):
            owner = .user(try await Auth(database: database).findUser(user, context: context).id)
        case (nil, let team?):
            guard let id = UUID(uuidString: team) else { throw CreditsError(.invalidInput, "--team must be a team id, such as 3f2a…") }
            owner = .team(id)
        default:
            throw CreditsError(.invalidInput, "give exactly one of --user and --team")
        }
        return try await Ledger(database: database).grant(
            to: owner, amount: amount, priority: priority, expiresAt: expiresAt, description: description,
            by: .operator("tally credits grant"), context: context)
    }

    /// Erases a user's personal data (by email or id), keeping their ledger rows (`Ledger.eraseUser`).
    public func eraseUser(_ user: String) async throws -> ErasedUser {
        let found = try await Auth(database: database).findUser(user, context: context)
        return try await Ledger(database: database).eraseUser(found.id, by: .operator("tally users erase"), context: context)
    }

    /// An API key of a user (by email or id), drawing on `team`'s account when given; the key is shown once.
    public func createKey(user: String, team: String?, limit: Int64?, name: String) async throws -> CreatedAPIKey {
        let teamID = try team.map { text in
            guard let id = UUID(uuidString: text) else { throw CreditsError(.invalidInput, "--team must be a team id, such as 3f2a…") }
            return id
        }
        let owner = try await Auth(database: database).findUser(user, context: context)
        return try await APIKeys(database: database).create(name: name, teamID: teamID, creditLimit: limit, by: owner, context: context)
    }

    /// A service key for the product's backend, with `scopes`; the key is shown once. Recorded in the admin
    /// audit log as the operator's.
    public func createServiceKey(name: String, scopes: [String]) async throws -> CreatedServiceKey {
        try await ServiceKeys(database: database).create(name: name, scopes: scopes, by: .operator("tally keys create --service"), context: context)
    }

    /// Every service key, the revoked ones too.
    public func serviceKeys() async throws -> [ServiceKey] {
        try await ServiceKeys(database: database).list(context: context)
    }

    /// Revokes a service key at once, by id.
    public func revokeServiceKey(_ id: String) async throws {
        guard let uuid = UUID(uuidString: id) else { throw CreditsError(.invalidInput, "give the service key's id, such as 3f2a… (tally keys list --service)") }
        try await ServiceKeys(database: database).revoke(uuid, by: .operator("tally keys revoke --service"), context: context)
    }
}
