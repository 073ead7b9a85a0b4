import Foundation
import PostgresNIO
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyCredits

/// Holds, captures and releases go in the same per-account batches as spends (`tally_apply`): decided in
/// arrival order against the running balance, held credits and key allowance, each with its own answer.
@Suite struct CombinedHoldTests {
    func apply(_ db: ConnectionSettings, _ operations: [AccountOperation]) async throws -> [OperationOutcome] {
        try await withSingleConnection(db) { try await Ledger.apply(operations, on: $0) }
    }

    func holdStatuses(_ client: PostgresClient) async throws -> [UUID: (String, Int64?)] {
        var statuses: [UUID: (String, Int64?)] = [:]
        for try await (id, status, captured) in try await client.query("SELECT id, status, captured FROM credit_holds").decode((UUID, String, Int64?).self) {
            statuses[id] = (status, captured)
        }
        return statuses
    }

    @Test(.freshDatabase(from: .tally)) func spendsHoldsCapturesAndReleasesOfOneAccountInOneBatch() async throws {
        let db = try TestDatabase.current
        try await withPostgresClient(db) { client in
            let key = try await funded(client, "h@example.com", credits: 100)
            let placed = try await apply(db, [
                .hold(key: key, amount: 30, ttl: 600, description: "a"), .hold(key: key, amount: 20, ttl: 600, description: "b"),
            ])
            #expect(placed.map(\.kind.rawValue) == ["ok", "ok"])
            #expect(placed.map(\.held) == [30, 50] && placed.map(\.available) == [70, 50])
            let (a, b) = (try #require(placed[0].holdID), try #require(placed[1].holdID))

            let unknown = UUID()
            let outcomes = try await apply(db, [
                .consume(ConsumeRequest(apiKey: key, amount: 40)),           // available 50 → 10
                .hold(key: key, amount: 20, ttl: 600, description: nil),     // refused: 10 available
                .capture(hold: a, amount: 25, key: key),                     // balance 35, held 20, available 15
                .hold(key: key, amount: 15, ttl: 600, description: nil),     // held 35, available 0
                .release(hold: b, key: key),                                 // held 15, available 20
                .capture(hold: a, amount: nil, key: key),                    // already captured
                .release(hold: unknown, key: key),
                .capture(hold: b, amount: 1, key: key),                      // already released
            ])
            #expect(outcomes.map(\.kind.rawValue) == [
                "ok", "insufficient-credits", "ok", "ok", "ok", "hold-captured", "hold-not-found", "hold-released",
            ])
            #expect(outcomes[0...4].map(\.balance) == [60, 60, 35, 35, 35])
            #expect(outcomes[0...4].map(\.held) == [50, 50, 20, 35, 15])
            #expect(outcomes[0...4].map(\.available) == [10, 10, 15, 0, 20])
            #expect(outcomes[2].captured == 25 && outcomes[2].holdAmount == 30 && outcomes[2].transactionID != nil)
            #expect(outcomes[1].holdID == nil, "a refused hold is not created")

            var entries: [(String, Int64, Int64, UUID?)] = []
            for try await row in try await client.query(
                "SELECT kind, amount, balance_after, hold_id FROM credit_transactions WHERE kind IN ('consume', 'capture') ORDER BY id"
            ).decode((String, Int64, Int64, UUID?).self) { entries.append(row) }
            #expect(entries.map(\.0) == ["consume", "capture"] && entries.map(\.1) == [-40, -25] && entries.map(\.2) == [60, 35])
            #expect(entries.last?.3 == a)
            #expect(outcomes[0].transactionID != outcomes[2].transactionID)

            let statuses = try await holdStatuses(client)
            #expect(statuses.count == 3, "the refused hold wrote nothing")
            #expect(statuses[a]?.0 == "captured" && statuses[a]?.1 == 25)
            #expect(statuses[b]?.0 == "released" && statuses[b]?.1 == nil)
            var allowance: (Int64, Int64)?
            for try await row in try await client.query("SELECT used, held FROM api_key_credits WHERE api_key_id = \(key.keyID)").decode((Int64, Int64).self) {
                allowance = row
            }
            #expect(allowance.map { [$0.0, $0.1] } == [65, 15], "the key spent 40 + 25 and holds 15")
            let balance = try await Ledger(client: client).balance(of: key.account, context: testQueries)
            #expect(balance.balance == 35 && balance.held == 15 && balance.available == 20)
            #expect(try await Audit.run(client, logger: testQueries.logger).ok)
        }
    }

    @Test(.freshDatabase(from: .tally)) func holdsCountAgainstTheKeysAllowanceInsideABatch() async throws {
        let db = try TestDatabase.current
        try await withPostgresClient(db) { client in
            let user = try await Auth(client: client, bcryptCost: 4).createUser(email: "l@example.com", password: "password123", name: nil, admin: false, context: testQueries)
            _ = try await Ledger(client: client).grant(to: .user(user.id), amount: 100, description: "test", by: .operator("test"), context: testQueries)
            let keys = APIKeys(client: client)
            let key = try await keys.authenticate(try await keys.create(name: "limited", teamID: nil, creditLimit: 50, by: user, context: testQueries).key, context: testQueries)
            let placed = try await apply(db, [.hold(key: key, amount: 30, ttl: 600, description: nil)])
            let hold = try #require(placed[0].holdID)
            let outcomes = try await apply(db, [
                .consume(ConsumeRequest(apiKey: key, amount: 30)),   // 30 held + 30 > 50
                .consume(ConsumeRequest(apiKey: key, amount: 20)),   // exactly the limit
                .release(hold: hold, key: key),                      // frees 30 of the allowance
                .consume(ConsumeRequest(apiKey: key, amount: 30)),   // now fits: 20 + 30 = 50
                .hold(key: key, amount: 1, ttl: 600, description: nil),
            ])
            #expect(outcomes.map(\.kind.rawValue) == ["key-limit-exceeded", "ok", "ok", "ok", "key-limit-exceeded"])
            #expect(outcomes[0].keyLimit == 50 && outcomes[0].keyUsed == 0 && outcomes[0].keyHeld == 30)
            #expect(outcomes[4].keyUsed == 50 && outcomes[4].keyHeld == 0)
            #expect(outcomes.map(\.balance) == [100, 80, 80, 50, 50])
            #expect(try await Audit.run(client, logger: testQueries.logger).ok)
        }
    }

    @Test(.freshDatabase(from: .tally)) func aReleaseThatUnholdsAnExpiredGrantExpiresItAndLaterOperationsSettleFirst() async throws {
        let db = try TestDatabase.current
        try await withPostgresClient(db) { client in
            let ledger = Ledger(client: client)
            let key = try await funded(client, "e@example.com", credits: 100)
            let hold = try await ledger.reserve(key, amount: 60, ttl: 600, description: nil, context: testQueries)
            try await client.query("UPDATE credit_grants SET expires_at = now() - interval '1 second'")
            // Reading settles what is due: the unheld 40 expire, the held 60 stay for the hold.
            let read = try await ledger.balance(of: key.account, context: testQueries)
            #expect(read.balance == 60 && read.held == 60)

            let outcomes = try await apply(db, [.release(hold: hold.holdID, key: key), .consume(ConsumeRequest(apiKey: key, amount: 1))])
            #expect(outcomes.map(\.kind.rawValue) == ["ok", "again"], "nothing else is decided on the account until its expiry is written")
            #expect(outcomes[0].balance == 0 && outcomes[0].held == 0 && outcomes[0].available == 0, "the release answers the balance after the expiry")
            #expect(try await scalarValue(client, "SELECT -sum(amount)::bigint FROM credit_transactions WHERE kind = 'expire'") == 100)
            let after = try await ledger.balance(of: key.account, context: testQueries)
            #expect(after.balance == 0 && after.held == 0)
            // The spend the batch sent back, made as the caller makes it (settled first): refused, nothing left.
            await #expect(throws: CreditsError.self) { try await ledger.consume(ConsumeRequest(apiKey: key, amount: 1), context: testQueries) }
            #expect(try await Audit.run(client, logger: testQueries.logger).ok)
        }
    }

    @Test(.freshDatabase(from: .tally)) func concurrentHoldsCapturesAndSpendsShareBatchesAndKeepTheAccountExact() async throws {
        let db = try TestDatabase.current
        try await withPostgresClient(db) { client in
            let ledger = Ledger(client: client)
            let key = try await funded(client, "c@example.com", credits: 10_000)
            let captured = try await withRunning(ledger) {
                try await withThrowingTaskGroup(of: Int64.self) { group in
                    for n in 0..<40 {
                        group.addTask {
                            // Each task: hold 10, spend 1, capture n % 10 + 1 (or release when n is a multiple of 7).
                            let hold = try await ledger.reserve(key, amount: 10, ttl: 600, description: nil, context: testQueries)
                            _ = try await ledger.consume(ConsumeRequest(apiKey: key, amount: 1), context: testQueries)
                            if n % 7 == 0 {
                                _ = try await ledger.release(hold.holdID, by: key, context: testQueries)
                                return 0
                            }
                            let amount = Int64(n % 10 + 1)
                            let result = try await ledger.capture(hold.holdID, amount: amount, by: key, context: testQueries)
                            return result.captured ?? -1
                        }
                    }
                    var total: Int64 = 0
                    for try await part in group { total += part }
                    return total
                }
            }
            let sent = ledger.batcher.statistics
            #expect(sent.operations == 120, "every hold, spend and settlement went through the batches")
            #expect(sent.batches < 120, "operations that arrive together share a statement (\(sent.batches) batches)")
            let balance = try await ledger.balance(of: key.account, context: testQueries)
            #expect(balance.held == 0)
            #expect(balance.balance == 10_000 - 40 - captured, "balance \(balance.balance), captured \(captured)")
            #expect(try await scalarValue(client, "SELECT count(*) FROM credit_holds WHERE status = 'open'") == 0)
            #expect(try await Audit.run(client, logger: testQueries.logger).ok)
        }
    }
}
