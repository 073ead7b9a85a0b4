import Foundation
import PostgresNIO
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyCredits

/// Spends with an `Idempotency-Key` go in their account's batch like any other: `tally_apply` keeps what it
/// decides for the key in the batch's transaction and answers it again on a retry.
@Suite struct IdempotentBatchTests {
    func claim(_ key: String, body: String = "{\"amount\":5}", scope: String = "scope-a") -> IdempotencyClaim {
        IdempotencyClaim(
            scope: scope, key: key, method: "POST", path: "/v1/credits/consume", requestHash: sha256Hex(Data(body.utf8)), retentionSeconds: 24 * 3600)
    }

    @Test(.freshDatabase(from: .tally)) func idempotentSpendsShareBatchesAndSpendOnceEach() async throws {
        let db = try TestDatabase.current
        try await withPostgresClient(db, maximumConnections: 8) { client in
            let key = try await funded(client, "a@example.com", credits: 1000)
            let ledger = Ledger(client: client, consumeLanes: 1)
            let claims = try (0..<40).map { claim("order-\($0)") }
            let (first, again) = try await withRunning(ledger) {
                let first = try await Self.spendAll(ledger, key, claims)
                // Every one retried: the same answers, nothing spent again.
                let again = try await Self.spendAll(ledger, key, claims)
                return (first, again)
            }
            #expect(Set(first.map(\.transactionID)).count == 40)
            #expect(first.map(\.transactionID).sorted() == again.map(\.transactionID).sorted())
            #expect(first.sorted { $0.transactionID < $1.transactionID } == again.sorted { $0.transactionID < $1.transactionID })
            #expect(claims.allSatisfy { $0.replayed }, "each retry was answered from the kept outcome")
            let sent = ledger.batcher.statistics
            #expect(sent.operations == 80)
            #expect(sent.batches < 80, "spends with Idempotency-Keys that arrive together go in one statement (\(sent.batches) batches)")
            #expect(try await scalarValue(client, "SELECT balance FROM user_credits") == 800)
            #expect(try await scalarValue(client, "SELECT count(*) FROM idempotency_keys WHERE outcome IS NOT NULL") == 40)
            #expect(try await Audit.run(client, logger: testQueries.logger).ok)
        }
    }

    static func spendAll(_ ledger: Ledger, _ key: APIKeyPrincipal, _ claims: [IdempotencyClaim]) async throws -> [ConsumeResult] {
        try await withThrowingTaskGroup(of: ConsumeResult.self) { group in
            for claim in claims {
                group.addTask {
                    try await ledger.consume(ConsumeRequest(apiKey: key, amount: 5), context: QueryContext(logger: testQueries.logger, idempotency: claim))
                }
            }
            var all: [ConsumeResult] = []
            for try await result in group { all.append(result) }
            return all
        }
    }

    @Test(.freshDatabase(from: .tally)) func aKeyRepeatedInOneBatchAnswersTheFirstAndAnotherBodyIsRefused() async throws {
        let db = try TestDatabase.current
        try await withPostgresClient(db) { client in
            let key = try await funded(client, "b@example.com", credits: 100)
            let spend = AccountOperation.consume(ConsumeRequest(apiKey: key, amount: 30))
            let same = claim("k1")
            let outcomes = try await withSingleConnection(db) { connection in
                try await Ledger.apply([
                    BatchedOperation(operation: spend, idempotency: same),
                    BatchedOperation(operation: spend, idempotency: claim("k1")),
                    BatchedOperation(operation: .consume(ConsumeRequest(apiKey: key, amount: 31)), idempotency: claim("k1", body: "{\"amount\":31}")),
                    BatchedOperation(operation: spend, idempotency: claim("k1", scope: "scope-b")),
                ], on: connection)
            }
            #expect(outcomes.map(\.kind) == [.ok, .ok, .idempotencyKeyReused, .ok])
            #expect(outcomes.map(\.replayed) == [false, true, false, false])
            #expect(outcomes[1].transactionID == outcomes[0].transactionID && outcomes[1].balance == outcomes[0].balance)
            #expect(outcomes[3].transactionID != outcomes[0].transactionID, "a key is its credential's own")
            #expect(try await scalarValue(client, "SELECT balance FROM user_credits") == 40)

            // A refusal is kept too: the retry is refused the same way after credits arrive.
            let broke = claim("k2", body: "{\"amount\":500}")
            let big = AccountOperation.consume(ConsumeRequest(apiKey: key, amount: 500))
            let refused = try await withSingleConnection(db) { try await Ledger.apply([BatchedOperation(operation: big, idempotency: broke)], on: $0) }
            #expect(refused.map(\.kind) == [.insufficientCredits])
            _ = try await Ledger(client: client).grant(to: key.account, amount: 1000, description: "more", by: .operator("test"), context: testQueries)
            let retried = try await withSingleConnection(db) { try await Ledger.apply([BatchedOperation(operation: big, idempotency: broke)], on: $0) }
            #expect(retried.map(\.kind) == [.insufficientCredits] && retried[0].replayed && retried[0].available == 40)
        }
    }

    @Test(.freshDatabase(from: .tally)) func aKeyInUseElsewhereIsInProgressAndAWholeAnswerIsLeftToTheServer() async throws {
        let db = try TestDatabase.current
        try await withPostgresClient(db) { client in
            let key = try await funded(client, "c@example.com", credits: 100)
            let spend = BatchedOperation(operation: .consume(ConsumeRequest(apiKey: key, amount: 1)), idempotency: claim("busy"))
            // Another server's transaction holds the key's lock.
            try await withSingleConnection(db) { other in
                try await other.execute("BEGIN")
                try await other.execute("SELECT pg_advisory_xact_lock(hashtextextended('scope-a' || ':' || 'busy', 7365))")
                let outcomes = try await withSingleConnection(db) { try await Ledger.apply([spend], on: $0) }
                #expect(outcomes.map(\.kind) == [.idempotencyInProgress])
                try await other.execute("ROLLBACK")
            }
            #expect(try await scalarValue(client, "SELECT count(*) FROM credit_transactions WHERE kind = 'consume'") == 0)
            // A whole answer kept for the key by a request that ran in its own transaction.
            try await client.query("""
                INSERT INTO idempotency_keys (scope, key, request_hash, method, path, status_code, content_type, response_body)
                VALUES ('scope-a', 'whole', \(sha256Hex(Data("{\"amount\":5}".utf8))), 'POST', '/v1/credits/consume', 200, 'application/json', '\\x7b7d')
                """)
            let whole = BatchedOperation(operation: .consume(ConsumeRequest(apiKey: key, amount: 5)), idempotency: claim("whole"))
            let kept = try await withSingleConnection(db) { try await Ledger.apply([whole], on: $0) }
            #expect(kept.map(\.kind) == [.idempotencyAnswerKept])
            #expect(try await scalarValue(client, "SELECT count(*) FROM credit_transactions WHERE kind = 'consume'") == 0)
        }
    }
}
