import Foundation
import PostgresNIO
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyCredits

/// The database keeps the ledger: no role rewrites or erases `credit_transactions`, a superuser included,
/// and deleting the people it belongs to leaves it whole.
@Suite struct LedgerKeepingTests {
    @Test(.freshDatabase(from: .tally)) func noRoleRewritesOrErasesTheLedger() async throws {
        let db = try TestDatabase.current
        try await withPostgresClient(db) { client in
            let key = try await funded(client, "ada@example.com", credits: 100)
            let ada = try await Auth(client: client).findUser(key.userID.uuidString, context: testQueries)
            let team = try await Teams(client: client).create(name: "Ops", by: ada, context: testQueries)
            _ = try await Ledger(client: client).grant(to: .team(team.id), amount: 50, description: "team", by: .operator("test"), context: testQueries)
            let rows = "SELECT count(*) FROM credit_transactions"
            let before = try await scalarValue(client, PostgresQuery(unsafeSQL: rows))
            #expect(before == 2)
            // Roles belong to the cluster, not the database: this one is the test's own, dropped at its end.
            let reader = "ledger_reader_\(UUID().uuidString.prefix(8).lowercased())"
            let isSuperuser = try await scalarValue(client, "SELECT rolsuper::int FROM pg_roles WHERE rolname = current_user")
            #expect(isSuperuser == 1, "these statements run as a superuser")

            for statement in [
                "UPDATE credit_transactions SET amount = amount * 10",
                "DELETE FROM credit_transactions",
                "TRUNCATE credit_transactions",
                "TRUNCATE credit_transactions CASCADE",
                "DELETE FROM users",
                "DELETE FROM teams",
                "DELETE FROM user_credits",
                // A superuser may turn ordinary triggers off for its session; these stay on.
                "SET session_replication_role = replica; DELETE FROM credit_transactions",
                // The archive's mark alone does not let a delete through: its transaction archives each row.
                "SELECT set_config('tally.archive_batch', '1', false); SET ROLE \(reader); DELETE FROM credit_transactions",
            ] {
                try await client.withConnection { connection in
                    _ = try? await connection.query(PostgresQuery(unsafeSQL: "CREATE ROLE \(reader)"), logger: testQueries.logger)
                    _ = try? await connection.query(PostgresQuery(unsafeSQL: "GRANT SELECT, DELETE ON ALL TABLES IN SCHEMA public TO \(reader)"), logger: testQueries.logger)
                    let refusal = await Self.refusal(of: statement, on: connection)
                    #expect(refusal?.contains("the ledger is append-only") == true, "\(statement): \(refusal ?? "it ran")")
                    _ = try? await connection.query("RESET ROLE; RESET session_replication_role; RESET tally.archive_batch", logger: testQueries.logger)
                }
            }
            try await client.withConnection { connection in
                _ = try await connection.query(PostgresQuery(unsafeSQL: "DROP OWNED BY \(reader)"), logger: testQueries.logger)
                _ = try await connection.query(PostgresQuery(unsafeSQL: "DROP ROLE \(reader)"), logger: testQueries.logger)
            }
            #expect(try await scalarValue(client, PostgresQuery(unsafeSQL: rows)) == before, "every ledger row is still there")
            #expect(try await scalarValue(client, "SELECT count(*) FROM users") == 1)
            #expect(try await audit(client).ok)
        }
    }

    /// The error text of `sql` run in a transaction that is rolled back, nil when it ran.
    static func refusal(of sql: String, on connection: PostgresConnection) async -> String? {
        do {
            _ = try await connection.query("BEGIN", logger: testQueries.logger)
            for part in sql.split(separator: ";") {
                _ = try await connection.query(PostgresQuery(unsafeSQL: String(part)), logger: testQueries.logger)
            }
            _ = try await connection.query("ROLLBACK", logger: testQueries.logger)
            return nil
        } catch {
            _ = try? await connection.query("ROLLBACK", logger: testQueries.logger)
            return describe(error)
        }
    }

    func audit(_ client: PostgresClient) async throws -> AuditReport {
        try await Audit.run(client, logger: testQueries.logger)
    }
}
