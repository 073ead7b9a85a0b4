import Foundation
import Logging
import PostgresNIO
import TallyPostgres

/// `tally db audit`: proves the ledger's invariants for every account.
public struct AuditReport: Sendable, Codable {
    public struct Failure: Sendable, Codable, Equatable {
        public var accountID: UUID
        public var problem: String

        enum CodingKeys: String, CodingKey {
            case problem
            case accountID = "account_id"
        }
    }

    public var accounts: Int
    public var failures: [Failure]
    public var ok: Bool { failures.isEmpty }
}

public enum Audit {
    /// For every account: balance = sum of its ledger entries, balance = sum of its grants' remainders,
    /// held = sum of its open holds, 0 ≤ held ≤ balance (available never negative), and every grant's
    /// remainder within its amount. For every API key: what it has reserved = the sum of its open holds.
    public static func run(_ client: PostgresClient, logger: Logger) async throws -> AuditReport {
        try await client.withConnection { raw in
            let connection = DatabaseConnection(raw, logger: logger)
            var accounts = 0
            for try await n in try await connection.query("SELECT count(*)::int FROM user_credits").decode(Int.self) {
                accounts = n
            }
            var failures: [AuditReport.Failure] = []
            let rows = try await connection.query("""
                SELECT a.id, a.balance, a.held,
                       COALESCE((SELECT sum(t.amount) FROM credit_transactions t WHERE t.account_id = a.id), 0)::bigint,
                       COALESCE((SELECT sum(g.remaining) FROM credit_grants g WHERE g.account_id = a.id), 0)::bigint,
                       (SELECT count(*) FROM credit_grants g WHERE g.account_id = a.id AND (g.remaining < 0 OR g.remaining > g.amount))::bigint,
                       COALESCE((SELECT sum(h.amount) FROM credit_holds h WHERE h.account_id = a.id AND h.status = 'open'), 0)::bigint
                FROM user_credits a ORDER BY a.id
                """)
            for try await (id, balance, held, ledger, grants, badGrants, holds) in rows.decode((UUID, Int64, Int64, Int64, Int64, Int64, Int64).self) {
                if balance != ledger { failures.append(.init(accountID: id, problem: "balance \(balance) ≠ sum of ledger entries \(ledger)")) }
                if balance != grants { failures.append(.init(accountID: id, problem: "balance \(balance) ≠ sum of grant remainders \(grants)")) }
                if held < 0 || held > balance { failures.append(.init(accountID: id, problem: "held \(held) outside 0…balance \(balance): available would be negative")) }
                if held != holds { failures.append(.init(accountID: id, problem: "held \(held) ≠ sum of open holds \(holds)")) }
                if badGrants > 0 { failures.append(.init(accountID: id, problem: "\(badGrants) grant(s) with a remainder outside 0…amount")) }
            }
            let keys = try await connection.query("""
                SELECT c.api_key_id, c.held, COALESCE((SELECT sum(h.amount) FROM credit_holds h WHERE h.api_key_id = c.api_key_id AND h.status = 'open'), 0)::bigint,
                       COALESCE((SELECT a.id FROM user_credits a JOIN api_keys k ON a.team_id = k.team_id OR (k.team_id IS NULL AND a.user_id = k.user_id) WHERE k.id = c.api_key_id), c.api_key_id)
                FROM api_key_credits c ORDER BY c.api_key_id
                """)
            for try await (key, held, holds, account) in keys.decode((UUID, Int64, Int64, UUID).self) where held != holds {
                failures.append(.init(accountID: account, problem: "API key \(key) reserves \(held) ≠ sum of its open holds \(holds)"))
            }
            return AuditReport(accounts: accounts, failures: failures)
        }
    }
}
