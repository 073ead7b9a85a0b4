import Foundation
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
    /// 0 ≤ held ≤ balance (available never negative), and every grant's remainder within its amount.
    public static func run(_ client: PostgresClient) async throws -> AuditReport {
        try await client.withConnection { connection in
            var accounts = 0
            for try await n in try await connection.query("SELECT count(*)::int FROM user_credits", logger: LocalCluster.quietLogger).decode(Int.self) {
                accounts = n
            }
            var failures: [AuditReport.Failure] = []
            let rows = try await connection.query("""
                SELECT a.id, a.balance, a.held,
                       COALESCE((SELECT sum(t.amount) FROM credit_transactions t WHERE t.account_id = a.id), 0)::bigint,
                       COALESCE((SELECT sum(g.remaining) FROM credit_grants g WHERE g.account_id = a.id), 0)::bigint,
                       (SELECT count(*) FROM credit_grants g WHERE g.account_id = a.id AND (g.remaining < 0 OR g.remaining > g.amount))::bigint
                FROM user_credits a ORDER BY a.id
                """, logger: LocalCluster.quietLogger)
            for try await (id, balance, held, ledger, grants, badGrants) in rows.decode((UUID, Int64, Int64, Int64, Int64, Int64).self) {
                if balance != ledger { failures.append(.init(accountID: id, problem: "balance \(balance) ≠ sum of ledger entries \(ledger)")) }
                if balance != grants { failures.append(.init(accountID: id, problem: "balance \(balance) ≠ sum of grant remainders \(grants)")) }
                if held < 0 || held > balance { failures.append(.init(accountID: id, problem: "held \(held) outside 0…balance \(balance): available would be negative")) }
                if badGrants > 0 { failures.append(.init(accountID: id, problem: "\(badGrants) grant(s) with a remainder outside 0…amount")) }
            }
            return AuditReport(accounts: accounts, failures: failures)
        }
    }
}
