import Foundation
import Logging
import PostgresNIO
import TallyPostgres
import TallyTestSupport
import Synchronization
import Testing
@testable import TallyCredits

/// The hot statements are prepared once per connection when prepared statements are on, never when the URL
/// turns them off, and a connection that lost its prepared statements (as behind a pooler that does not keep
/// them) turns them off and still answers.
@Suite struct PreparedStatementTests {
    /// The names of the statements prepared on `connection`.
    func preparedNames(_ connection: DatabaseConnection) async throws -> [String] {
        var names: [String] = []
        for try await name in try await connection.query("SELECT name FROM pg_prepared_statements ORDER BY name").decode(String.self) {
            names.append(name)
        }
        return names
    }

    @Test(.freshDatabase(from: .tally)) func hotStatementsArePreparedOncePerConnectionUnlessTurnedOff() async throws {
        let db = try TestDatabase.current
        let key = try await withPostgresClient(db) { client in try await funded(client, "p@example.com", credits: 50) }
        for (round, enabled) in [true, false].enumerated() {
            try await withSingleConnection(db) { plain in
                let connection = DatabaseConnection(plain.underlying, logger: plain.logger, prepared: PreparedStatements(enabled: enabled))
                for _ in 0..<3 {
                    let balance = try await Ledger.committedBalance(of: key.account, liveKey: key.keyID, on: connection)
                    #expect(balance?.balance == 50 - Int64(round), "each round spends 1")
                }
                _ = try await Ledger.apply([.consume(ConsumeRequest(apiKey: key, amount: 1))], on: connection)
                let names = try await preparedNames(connection)
                if enabled {
                    #expect(names.sorted() == [CommittedBalance.name, ApplyOperations.name].sorted(), "\(names)")
                    #expect(names.allSatisfy { $0.hasPrefix("tally_") })
                } else {
                    #expect(names.isEmpty, "\(names)")
                }
            }
        }
        let off = try ConnectionSettings(url: "postgres://u@localhost/db?prepared_statements=off")
        #expect(!off.preparedStatements)
        #expect(try ConnectionSettings(url: off.url()).preparedStatements == false, "the setting survives the URL")
        #expect(try ConnectionSettings(url: "postgres://u@localhost/db").preparedStatements)
        #expect(throws: TallyPostgresError.self) { try ConnectionSettings(url: "postgres://u@localhost/db?prepared_statements=maybe") }
    }

    /// Unprepared, the balance read goes through `tally_committed_balance` (migration 0009): it must be the same
    /// statement, row for row, for every state an account can be in.
    @Test(.freshDatabase(from: .tally)) func theUnpreparedBalanceReadGivesTheSameRows() async throws {
        let db = try TestDatabase.current
        let (plain, due, revoked) = try await withPostgresClient(db) { client in
            (try await funded(client, "plain@example.com", credits: 50), try await funded(client, "due@example.com", credits: 30),
             try await funded(client, "revoked@example.com", credits: 20))
        }
        try await withSingleConnection(db) { connection in
            // plain: three grants in burn order (priority, then soonest expiry), one spent out; due: a grant
            // past its expiry with credits left; revoked: its key is revoked.
            for statement in [
                "INSERT INTO credit_grants (account_id, amount, remaining, priority, expires_at, description) SELECT id, 10, 10, 1, now() + interval '1 day', 'later' FROM user_credits WHERE user_id = '\(plain.userID)'",
                "INSERT INTO credit_grants (account_id, amount, remaining, priority, expires_at, description) SELECT id, 5, 0, 0, NULL, 'spent' FROM user_credits WHERE user_id = '\(plain.userID)'",
                "UPDATE user_credits SET balance = balance + 10 WHERE user_id = '\(plain.userID)'",
                "UPDATE credit_grants SET expires_at = now() - interval '1 second' WHERE account_id = (SELECT id FROM user_credits WHERE user_id = '\(due.userID)')",
                "UPDATE api_keys SET revoked_at = now() WHERE id = '\(revoked.keyID)'",
            ] {
                try await connection.execute(PostgresQuery(unsafeSQL: statement))
            }
        }
        for enabled in [true, false] {
            try await withSingleConnection(db) { plain0 in
                let connection = DatabaseConnection(plain0.underlying, logger: plain0.logger, prepared: PreparedStatements(enabled: enabled))
                var answers: [String] = []
                for key in [plain, due, revoked] {
                    for liveKey in [nil, key.keyID, UUID()] {
                        let rows = try await connection.run(CommittedBalance(owner: key.account, liveKey: liveKey))
                        answers.append(rows.map { "\($0)" }.joined(separator: "; "))
                    }
                }
                Self.answers.withLock { $0[enabled] = answers }
            }
        }
        let both = Self.answers.withLock { $0 }
        #expect(both[true] == both[false], "prepared: \(both[true] ?? [])\nunprepared: \(both[false] ?? [])")
        // The states differ as they should: three grants (two open), a due account, nothing for a revoked or unknown key.
        let prepared = both[true] ?? []
        #expect(prepared.count == 9)
        #expect(prepared[0].components(separatedBy: "; ").count == 2 && prepared[0].contains("false"), "\(prepared[0])")
        #expect(prepared[3].contains("true"), "due: \(prepared[3])")
        #expect(prepared[2].isEmpty && prepared[7].isEmpty, "an unknown key, a revoked key: no rows")
    }
    static let answers = Mutex<[Bool: [String]]>([:])

    @Test(.freshDatabase(from: .tally)) func aConnectionThatLostItsStatementsTurnsThemOffAndStillAnswers() async throws {
        let db = try TestDatabase.current
        let key = try await withPostgresClient(db) { client in try await funded(client, "l@example.com", credits: 50) }
        try await withSingleConnection(db) { plain in
            let prepared = PreparedStatements(enabled: true)
            let connection = DatabaseConnection(plain.underlying, logger: plain.logger, prepared: prepared)
            #expect(try await Ledger.committedBalance(of: key.account, liveKey: nil, on: connection)?.balance == 50)
            #expect(try await preparedNames(connection) == [CommittedBalance.name])

            // What a transaction-mode pooler does: the next statement runs on a server connection that never
            // saw the prepared statement.
            try await connection.execute("DEALLOCATE ALL")
            #expect(try await Ledger.committedBalance(of: key.account, liveKey: nil, on: connection)?.balance == 50, "answered, unprepared")
            #expect(!prepared.isEnabled, "prepared statements are off from now on")
            #expect(try await preparedNames(connection).isEmpty)
            #expect(try await Ledger.apply([.consume(ConsumeRequest(apiKey: key, amount: 5))], on: connection).first?.balance == 45)
            #expect(try await preparedNames(connection).isEmpty, "nothing is prepared once they are off")
        }
    }

    @Test(.freshDatabase(from: .tally)) func insideATransactionALostStatementFailsTheTransactionToBeRetried() async throws {
        let db = try TestDatabase.current
        let key = try await withPostgresClient(db) { client in try await funded(client, "t@example.com", credits: 50) }
        try await withSingleConnection(db) { plain in
            let prepared = PreparedStatements(enabled: true)
            let connection = DatabaseConnection(plain.underlying, logger: plain.logger, prepared: prepared)
            #expect(try await Ledger.apply([.consume(ConsumeRequest(apiKey: key, amount: 1))], on: connection).first?.balance == 49)
            try await connection.execute("DEALLOCATE ALL")
            await #expect(throws: PreparedStatementLost.self) {
                try await connection.transaction { inside in
                    _ = try await Ledger.apply([.consume(ConsumeRequest(apiKey: key, amount: 5))], on: inside)
                }
            }
            #expect(!prepared.isEnabled)
            // Nothing was spent; the retry runs unprepared.
            let retried = try await connection.transaction { inside in
                try await Ledger.apply([.consume(ConsumeRequest(apiKey: key, amount: 5))], on: inside)
            }
            #expect(retried.first?.kind == .ok && retried.first?.balance == 44)
        }
    }
}
