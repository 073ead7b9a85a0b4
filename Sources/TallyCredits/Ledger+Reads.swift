import Foundation
import PostgresNIO
import TallyPostgres

/// Reading an account without waiting: the balance (and the ledger listing, `Ledger+History`) is answered from
/// the committed rows in one statement, with no lock and no write, so a read never waits for spends on the
/// same account, nor for a WAL flush. Only an account that does not exist yet, or has something due (an open
/// hold past its expiry, an expired grant with unheld credits left), is settled under the account lock
/// first, as a spend would settle it, and then read.
extension Ledger {
    /// The account's balance, held and available credits and its open grants (expired ones leave first).
    public func balance(of owner: AccountOwner, context: QueryContext) async throws -> Balance {
        if let committed = try await database.connection(context, { try await Self.committedBalance(of: owner, on: $0) }) {
            return committed
        }
        return try await database.transaction(context) { connection in
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

    /// The balance as committed, in one statement; nil when the account does not exist or has something due.
    static func committedBalance(of owner: AccountOwner, on connection: DatabaseConnection) async throws -> Balance? {
        var balance: Balance?
        for try await (account, total, held, due, grant, remaining, expires, priority) in try await connection.query(
            """
            WITH acct AS (\(unescaped: accountWithDue(owner.column)) = \(owner.id))
            SELECT acct.id, acct.balance, acct.held, acct.due, g.id, g.remaining, g.expires_at, g.priority
            FROM acct LEFT JOIN credit_grants g ON g.account_id = acct.id AND g.remaining > 0 AND NOT acct.due
            ORDER BY g.priority, g.expires_at NULLS LAST, g.created_at, g.id
            """
        ).decode((UUID, Int64, Int64, Bool, UUID?, Int64?, Date?, Int?).self) {
            if due { return nil }
            if balance == nil { balance = Balance(accountID: account, balance: total, held: held, available: total - held, grants: []) }
            if let grant, let remaining, let priority {
                balance?.grants.append(.init(id: grant, remaining: remaining, expiresAt: expires, priority: priority))
            }
        }
        return balance
    }

    /// The account of an owner (`WHERE a.<column>` left for the caller to bind) with whether anything is due:
    /// an open hold past its expiry, or an expired grant with credits left while not all credits are held
    /// (held credits stay until their hold settles, so such a grant has nothing to give up yet).
    static func accountWithDue(_ column: String) -> String {
        """
        SELECT a.id, a.balance, a.held, \(holdsDue) OR (a.balance > a.held AND \(grantsDue)) AS due
        FROM user_credits a WHERE a.\(column)
        """
    }
}
