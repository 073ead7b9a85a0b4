import Foundation
import PostgresNIO
import ServiceLifecycle
import TallyPostgres

/// Whose credit account: a user's own, or a team's.
public enum AccountOwner: Sendable, Hashable {
    case user(UUID)
    case team(UUID)

    /// The `user_credits` column that names this owner's account.
    var column: String {
        switch self {
        case .user: "user_id"
        case .team: "team_id"
        }
    }

    var id: UUID {
        switch self {
        case .user(let id), .team(let id): id
        }
    }
}

/// What `GET /v1/credits/balance` answers.
public struct Balance: Sendable, Codable, Equatable {
    public struct Grant: Sendable, Codable, Equatable {
        public var id: UUID
        public var remaining: Int64
        public var expiresAt: Date?
        public var priority: Int

        enum CodingKeys: String, CodingKey {
            case id, remaining, priority
            case expiresAt = "expires_at"
        }
    }

    public var accountID: UUID
    public var balance: Int64
    public var held: Int64
    public var available: Int64
    public var grants: [Grant]

    enum CodingKeys: String, CodingKey {
        case balance, held, available, grants
        case accountID = "account_id"
    }
}

/// A grant as created.
public struct CreditGrant: Sendable, Codable, Equatable {
    public var id: UUID
    public var accountID: UUID
    public var amount: Int64
    public var priority: Int
    public var expiresAt: Date?
    public var description: String?
    public var balance: Int64

    enum CodingKeys: String, CodingKey {
        case id, amount, priority, description, balance
        case accountID = "account_id"
        case expiresAt = "expires_at"
    }
}

/// Credit accounts (`user_credits`), grants and the append-only ledger (`credit_transactions`).
///
/// Every change to an account happens in one transaction holding the account row's lock
/// (`SELECT … FOR UPDATE`), and writes one ledger entry per change with the balance after it, so for every
/// account balance = the sum of its ledger amounts. A transaction that locks several accounts (a batch of
/// `tally_apply`) locks them in id order, so two never deadlock.
public struct Ledger: Service, Sendable {
    public let database: Database
    let batcher: AccountBatcher

    /// `consumeLanes`: how many batches of spends may run at once (each on its own connection).
    public init(client: PostgresClient, consumeLanes: Int = 4) {
        self.init(database: Database(client), consumeLanes: consumeLanes)
    }

    /// `databaseWait`: how long a batch of spends waits for a connection.
    public init(database: Database, consumeLanes: Int = 4, databaseWait: Duration = DatabaseWait.standard) {
        self.database = database
        // A batch serves several requests at once, so it logs to the database's logger, marked
        // `tally.work=consume-batch`, not to any one request's.
        var logger = database.logger
        logger[metadataKey: "tally.work"] = "consume-batch"
        self.batcher = AccountBatcher(lanes: consumeLanes) { [logger] operations in
            try await DatabaseWait.$limit.withValue(databaseWait) { try await Self.send(operations, to: database, logger: logger) }
        }
    }

    /// Runs the account batcher's workers (a service of the application's group): while they do not run, each
    /// operation is sent alone.
    public func run() async throws {
        await batcher.run()
    }

    /// Creates `owner`'s (empty) account, or finds it when another transaction just did; its id.
    func createAccount(for owner: AccountOwner, on connection: DatabaseConnection) async throws -> UUID {
        var account: UUID?
        do {
            for try await id in try await connection.query(
                """
                INSERT INTO user_credits (\(unescaped: owner.column)) VALUES (\(owner.id))
                ON CONFLICT (\(unescaped: owner.column)) DO UPDATE SET updated_at = user_credits.updated_at RETURNING id
                """
            ).decode(UUID.self) { account = id }
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == "23503" {
            // The owner's row does not exist (foreign_key_violation).
            let missing = switch owner {
            case .user(let user): "no user \(user.lowercasedString); create the user first"
            case .team(let team): "no team \(team.lowercasedString)"
            }
            throw CreditsError(.notFound, missing)
        }
        guard let account else { throw CreditsError(.notFound, "no credit account for that owner") }
        return account
    }

    /// Locks `owner`'s account row for the rest of the transaction (creating the account on first use),
    /// settles what time has settled (holds past their expiry are released; grants past theirs leave through
    /// `expire` entries), and returns the account with its balance and held credits after that. The settling
    /// rules are PostgreSQL's `tally_settle` (migration `0020_account_rules`), which `tally_apply` calls too.
    func lockAccount(of owner: AccountOwner, on connection: DatabaseConnection) async throws -> (account: UUID, balance: Int64, held: Int64) {
        for try await row in try await connection.query(
            "SELECT a.id, s.balance, s.held FROM user_credits a CROSS JOIN LATERAL tally_settle(a.id) s WHERE a.\(unescaped: owner.column) = \(owner.id)"
        ).decode((UUID, Int64, Int64).self) {
            return row
        }
        // First use: the lock found no account.
        let account = try await createAccount(for: owner, on: connection)
        let (balance, held) = try await lockAccount(account, on: connection)
        return (account, balance, held)
    }

    /// `lockAccount(of:)` for an account known by id.
    func lockAccount(_ account: UUID, on connection: DatabaseConnection) async throws -> (balance: Int64, held: Int64) {
        for try await row in try await connection.query("SELECT balance, held FROM tally_settle(\(account))").decode((Int64, Int64).self) {
            return row
        }
        throw CreditsError(.notFound, "no credit account \(account.lowercasedString)")
    }

    /// Adds a grant to `owner`'s account, with its ledger entry.
    public func grant(
        to owner: AccountOwner, amount: Int64, priority: Int = 0, expiresAt: Date? = nil, description: String?, by actor: Actor,
        context: QueryContext
    ) async throws -> CreditGrant {
        guard amount > 0 else { throw CreditsError(.invalidInput, "amount must be a positive integer") }
        guard Int32(exactly: priority) != nil else {
            throw CreditsError(.invalidInput, "priority must lie between \(Int32.min) and \(Int32.max) (it is stored as a 32-bit integer)")
        }
        if let expiresAt, expiresAt <= Date() { throw CreditsError(.invalidInput, "expires_at is in the past") }
        try TextRules.checkDescription(description)
        return try await database.transaction(context) { connection in
            let (account, balance, held) = try await lockAccount(of: owner, on: connection)
            let (newBalance, overflow) = balance.addingReportingOverflow(amount)
            guard !overflow else { throw CreditsError(.invalidInput, "the balance would overflow a 64-bit integer") }
            // The grant, the balance and the entry (tally_grant_credits), then the alerts and top-up rules the new
            // balance decides (balance.recovered), in this transaction and one statement.
            var grantID: UUID?
            for try await (id, _) in try await connection.query(
                """
                SELECT g.grant_id, tally_balance_changed(\(account), g.balance - g.held, g.transaction_id)::text
                FROM tally_grant_credits(\(account), \(amount), \(priority)::integer, \(expiresAt)::timestamptz, \(description)::text,
                    \(actor.userID)::uuid, \(actor.requestID)::text) g
                """
            ).decode((UUID, String?).self) { grantID = id }
            guard let grantID else { throw CreditsError(.invalidInput, "the grant was not created") }
            var subject: [String: JSONValue] = [
                "grant_id": .string(grantID.lowercasedString), "account_id": .string(account.lowercasedString), "amount": .integer(amount),
                "priority": .integer(Int64(priority)), "balance_after": .integer(newBalance),
            ]
            switch owner {
            case .user(let id): subject["user_id"] = .string(id.lowercasedString)
            case .team(let id): subject["team_id"] = .string(id.lowercasedString)
            }
            if let expiresAt { subject["expires_at"] = .string(ISO8601DateFormatter().string(from: expiresAt)) }
            if let description { subject["description"] = .string(description) }
            try await AdminAudit.record("grant", by: actor, subject: subject, on: connection, logger: context.logger)
            return CreditGrant(id: grantID, accountID: account, amount: amount, priority: priority, expiresAt: expiresAt, description: description, balance: newBalance)
        }
    }
}
