import Foundation
import PostgresNIO
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyCredits

/// `tally_apply` decides a batch's spends together, per account: in arrival order while they fit, each with
/// its own answer and ledger row; a refusal writes nothing.
@Suite struct CombinedSpendTests {
    /// Runs `requests` as one `tally_apply` call.
    func spend(_ db: ConnectionSettings, _ requests: [ConsumeRequest]) async throws -> [OperationOutcome] {
        try await withSingleConnection(db) { try await Ledger.apply(requests.map { .consume($0) }, on: $0) }
    }

    func consumeEntries(_ client: PostgresClient, _ account: UUID) async throws -> [(Int64, Int64)] {
        var rows: [(Int64, Int64)] = []
        for try await row in try await client.query(
            "SELECT amount, balance_after FROM credit_transactions WHERE account_id = \(account) AND kind = 'consume' ORDER BY id"
        ).decode((Int64, Int64).self) { rows.append(row) }
        return rows
    }

    @Test(.freshDatabase(from: .tally)) func refusedSpendsWriteNothingAndLaterOnesGetWhatRemains() async throws {
        let db = try TestDatabase.current
        try await withPostgresClient(db) { client in
            let key = try await funded(client, "a@example.com", credits: 10)
            _ = try await Ledger(client: client).balance(of: key.account, context: testQueries)   // the account exists
            let outcomes = try await spend(db, [4, 5, 3, 1].map { ConsumeRequest(apiKey: key, amount: $0) })
            #expect(outcomes.map(\.kind.rawValue) == ["ok", "ok", "insufficient-credits", "ok"])
            #expect(outcomes.map(\.balance) == [6, 1, 1, 0], "each answer has its own balance after (or the balance it saw)")
            #expect(outcomes[2].transactionID == nil)
            let ids = outcomes.compactMap(\.transactionID)
            #expect(ids.count == 3 && Set(ids).count == 3)
            let accountID = try await Ledger(client: client).balance(of: key.account, context: testQueries).accountID
            let entries = try await consumeEntries(client, accountID)
            #expect(entries.map(\.0) == [-4, -5, -1] && entries.map(\.1) == [6, 1, 0], "\(entries)")
            #expect(try await Audit.run(client, logger: testQueries.logger).ok)
        }
    }

    @Test(.freshDatabase(from: .tally)) func severalAccountsInOneBatchEachKeepTheirOrder() async throws {
        let db = try TestDatabase.current
        try await withPostgresClient(db) { client in
            let a = try await funded(client, "a@example.com", credits: 10)
            let b = try await funded(client, "b@example.com", credits: 5)
            for key in [a, b] { _ = try await Ledger(client: client).balance(of: key.account, context: testQueries) }
            let outcomes = try await spend(db, [(a, 6), (b, 3), (a, 6), (b, 2), (a, 4), (b, 1)].map { ConsumeRequest(apiKey: $0.0, amount: $0.1) })
            #expect(outcomes.map(\.kind.rawValue) == ["ok", "ok", "insufficient-credits", "ok", "ok", "insufficient-credits"])
            #expect(outcomes.map(\.balance) == [4, 2, 4, 0, 0, 0])
            let balances = try await [a, b].asyncMap { try await Ledger(client: client).balance(of: $0.account, context: testQueries).balance }
            #expect(balances == [0, 0])
            #expect(try await Audit.run(client, logger: testQueries.logger).ok)
        }
    }

    @Test(.freshDatabase(from: .tally)) func aKeysLimitHoldsInsideABatch() async throws {
        let db = try TestDatabase.current
        try await withPostgresClient(db) { client in
            let user = try await Auth(client: client, bcryptCost: 4).createUser(email: "k@example.com", password: "password123", name: nil, admin: false, context: testQueries)
            _ = try await Ledger(client: client).grant(to: .user(user.id), amount: 100, description: "test", by: .operator("test"), context: testQueries)
            let keys = APIKeys(client: client)
            let limited = try await keys.authenticate(try await keys.create(name: "limited", teamID: nil, creditLimit: 5, by: user, context: testQueries).key, context: testQueries)
            let open = try await keys.authenticate(try await keys.create(name: "open", teamID: nil, creditLimit: nil, by: user, context: testQueries).key, context: testQueries)
            let outcomes = try await spend(db, [(limited, 3), (limited, 3), (open, 50), (limited, 2), (limited, 1)].map { ConsumeRequest(apiKey: $0.0, amount: $0.1) })
            #expect(outcomes.map(\.kind.rawValue) == ["ok", "key-limit-exceeded", "ok", "ok", "key-limit-exceeded"])
            #expect(outcomes[1].keyLimit == 5 && outcomes[1].keyUsed == 3)
            #expect(outcomes.map(\.balance) == [97, 97, 47, 45, 45])
            var used: [Int64] = []
            for try await value in try await client.query(
                "SELECT used FROM api_key_credits WHERE api_key_id IN (\(limited.keyID), \(open.keyID)) ORDER BY credit_limit NULLS LAST"
            ).decode(Int64.self) { used.append(value) }
            #expect(used == [5, 50])
            #expect(try await Audit.run(client, logger: testQueries.logger).ok)
        }
    }
}

extension Array where Element: Sendable {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var result: [T] = []
        for element in self { result.append(try await transform(element)) }
        return result
    }
}
