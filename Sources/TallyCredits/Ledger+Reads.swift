import Foundation
import PostgresNIO
import TallyPostgres

/// Reading an account without waiting: the balance (and the ledger listing, `Ledger+History`) is answered from
/// the committed rows in one statement, with no lock and no write, so a read never waits for spends on the
/// same account, nor for a WAL flush. Only an account that does not exist yet, or has something due (an open
/// hold past its expiry, an expired grant with unheld credits left), is settled under the account lock
/// first, as a spend would settle it, and then read.
///
/// A read with an API key the caller knows from a cache (`liveKey`) checks in the same statement that the key
/// is still live, so a revoked key reads nothing from the moment it is revoked, at no extra round trip.
extension Ledger {
    /// The account's balance, held and available credits and its open grants (expired ones leave first);
    /// unauthenticated when `liveKey` is given and the key is revoked.
    public func balance(of owner: AccountOwner, liveKey: UUID? = nil, context: QueryContext) async throws -> Balance {
        if let committed = try await database.connection(context, { try await Self.committedBalance(of: owner, liveKey: liveKey, on: $0) }) {
            return committed
        }
        return try await database.transaction(context) { connection in
            try await Self.requireLive(liveKey, on: connection)
            let (account, balance, held) = try await lockAccount(of: owner, on: connection)
            var grants: [Balance.Grant] = []
            for try await (id, remaining, expires, priority) in try await connection.query(
                "SELECT id, remaining, expires_at, priority FROM credit_grants WHERE account_id = \(account) AND remaining > 0 ORDER BY priority, expires_at NULLS LAST, created_at, id"
            ).decode((UUID, Int64, Date?, Int).self) {
                grants.append(.init(id: id, remaining: remaining, expiresAt: expires, priority: priority))
            }
            return Balance(accountID: account, balance: balance, held: held, available: balance - held, grants: grants)
        }
    }

    /// The balance as committed, in one statement; nil when the account does not exist, has something due or
    /// `liveKey` is not live.
    static func committedBalance(of owner: AccountOwner, liveKey: UUID?, on connection: DatabaseConnection) async throws -> Balance? {
        var balance: Balance?
        for (account, total, held, due, grant, remaining, expires, priority) in try await connection.run(CommittedBalance(owner: owner, liveKey: liveKey)) {
            if due { return nil }
            if balance == nil { balance = Balance(accountID: account, balance: total, held: held, available: total - held, grants: []) }
            if let grant, let remaining, let priority {
                balance?.grants.append(.init(id: grant, remaining: remaining, expiresAt: expires, priority: priority))
            }
        }
        return balance
    }

    /// The account a read names, as the CTE `acct` of its statement: $1 the owning user or $2 the owning team
    /// (the other NULL), and $3 the API key that reads (NULL for a session), which must still be live. With
    /// whether anything is due (the rule is PostgreSQL's `tally_due`, migration `0020_account_rules`).
    static let readableAccount = """
        acct AS (
            SELECT a.id, a.balance, a.held, tally_due(a.id, a.balance, a.held) AS due
            FROM user_credits a
            WHERE (a.user_id = $1 OR a.team_id = $2)
              AND ($3::uuid IS NULL OR EXISTS (SELECT 1 FROM api_keys k WHERE k.id = $3 AND k.revoked_at IS NULL)))
        """

    /// Refuses a `liveKey` that is unknown or revoked.
    static func requireLive(_ liveKey: UUID?, on connection: DatabaseConnection) async throws {
        guard let liveKey else { return }
        for try await _ in try await connection.query("SELECT 1 FROM api_keys WHERE id = \(liveKey) AND revoked_at IS NULL") { return }
        throw CreditsError(.unauthenticated, "the API key is unknown or revoked")
    }
}

/// The balance read (`Ledger.committedBalance`): the account and its open grants, in burn order.
struct CommittedBalance: HotStatement {
    typealias Row = (UUID, Int64, Int64, Bool, UUID?, Int64?, Date?, Int?)
    static let sql = """
        WITH \(Ledger.readableAccount)
        SELECT acct.id, acct.balance, acct.held, acct.due, g.id, g.remaining, g.expires_at, g.priority
        FROM acct LEFT JOIN credit_grants g ON g.account_id = acct.id AND g.remaining > 0 AND NOT acct.due
        ORDER BY g.priority, g.expires_at NULLS LAST, g.created_at, g.id
        """
    /// Unprepared (behind a pooler), the same statement through `tally_committed_balance` (migration
    /// `0009_pooled_reads`), whose plan the server keeps: planning `sql` every time costs several times running it.
    static let unpreparedSQL = "SELECT * FROM tally_committed_balance($1, $2, $3)"

    var owner: AccountOwner
    var liveKey: UUID?

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 3)
        bindings.appendOwner(owner)
        bindings.append(liveKey)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

extension PostgresBindings {
    /// $n the owning user and $n+1 the owning team, one of them NULL (`Ledger.readableAccount`).
    mutating func appendOwner(_ owner: AccountOwner) {
        switch owner {
        case .user(let id): append(id); append(UUID?.none)
        case .team(let id): append(UUID?.none); append(id)
        }
    }
}
