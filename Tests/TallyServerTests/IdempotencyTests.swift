import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import TallyCredits
import TallyPostgres
import Testing
@testable import TallyServer

@Suite struct IdempotencyTests {
    func consume(_ client: some TestClientProtocol, _ key: String, idempotencyKey: String, _ body: [String: Any]) async throws -> TestResponse {
        try await client.execute(
            uri: "/v1/credits/consume", method: .post,
            headers: [.authorization: "Bearer \(key)", .idempotencyKey: idempotencyKey], body: json(body))
    }

    @Test func aRetryGetsTheFirstAnswerAndSpendsOnce() async throws {
        try await withTallyServer { client, db in
            let (admin, user, key) = try await fundedUser(client, db, credits: 100)

            let first = try await consume(client, key, idempotencyKey: "order-1", ["amount": 10, "description": "search"])
            #expect(first.status == .ok)
            #expect(first.headers[.idempotentReplayed] == nil)
            // The same fields in another order are the same request.
            let retry = try await client.execute(
                uri: "/v1/credits/consume", method: .post, headers: [.authorization: "Bearer \(key)", .idempotencyKey: "order-1"],
                body: ByteBuffer(string: #"{"description": "search", "amount": 10}"#))
            #expect(retry.status == .ok)
            #expect(retry.headers[.idempotentReplayed] == "true")
            #expect(String(buffer: retry.body) == String(buffer: first.body))
            #expect(try await scalar(db, "SELECT count(*) FROM credit_transactions WHERE kind = 'consume'") == 1)

            // The same key for anything else is refused, and spends nothing.
            let other = try await client.execute(
                uri: "/v1/credits/consume", method: .post, headers: [.authorization: "Bearer \(key)", .idempotencyKey: "order-1"],
                body: ByteBuffer(string: #"{"amount": 11, "description": "search"}"#))
            #expect(other.status == .conflict)
            #expect(object(other.body)["type"] as? String == "/problems/idempotency-key-reused")
            let elsewhere = try await client.execute(
                uri: "/v1/credits/holds", method: .post, headers: [.authorization: "Bearer \(key)", .idempotencyKey: "order-1"],
                body: json(["amount": 10, "description": "search"]))
            #expect(elsewhere.status == .conflict)
            #expect(try await scalar(db, "SELECT count(*) FROM credit_transactions WHERE kind = 'consume'") == 1)
            #expect(try await scalar(db, "SELECT count(*) FROM credit_holds") == 0)

            // A refusal is an answer too: the retry gets the same 402, even after credits arrive.
            let broke = try await consume(client, key, idempotencyKey: "order-2", ["amount": 500])
            #expect(broke.status.code == 402)
            try await grant(client, admin, user: user.id, 1000)
            let brokeAgain = try await consume(client, key, idempotencyKey: "order-2", ["amount": 500])
            #expect(brokeAgain.status.code == 402)
            #expect(brokeAgain.headers[.idempotentReplayed] == "true")
            #expect(brokeAgain.headers[.contentType] == "application/problem+json")

            // Keys belong to the credential that sent them: another key's "order-1" is its own.
            let otherKey = try await newKey(client, user, ["name": "second"])
            let fresh = try await consume(client, otherKey, idempotencyKey: "order-1", ["amount": 10, "description": "search"])
            #expect(fresh.status == .ok)
            #expect(fresh.headers[.idempotentReplayed] == nil)
            #expect(try await scalar(db, "SELECT count(*) FROM credit_transactions WHERE kind = 'consume'") == 2)

            let badKey = try await consume(client, key, idempotencyKey: String(repeating: "k", count: 256), ["amount": 1])
            #expect(badKey.status == .badRequest)
            #expect(try await scalar(db, "SELECT count(*) FROM credit_transactions WHERE kind = 'consume'") == 2)
        }
    }

    @Test func twentyRequestsWithOneKeyAtOnceSpendOnce() async throws {
        try await withTallyServer { client, db in
            let (_, _, key) = try await fundedUser(client, db, credits: 1000)
            let port = try #require(client.port)

            let answers = try await withThrowingTaskGroup(of: Answer.self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        try await send(port: port, "/v1/credits/consume", token: key, body: ["amount": 7], headers: ["Idempotency-Key": "burst"])
                    }
                }
                var all: [Answer] = []
                for try await answer in group { all.append(answer) }
                return all
            }
            #expect(answers.allSatisfy { $0.status == 200 || $0.status == 409 }, "\(answers.map(\.status))")
            let conflicts = answers.filter { $0.status == 409 }
            #expect(conflicts.allSatisfy { $0.body["type"] as? String == "/problems/idempotency-request-in-progress" })
            let ok = answers.filter { $0.status == 200 }
            #expect(!ok.isEmpty)
            #expect(Set(ok.map { $0.body["transaction_id"] as? Int ?? -1 }).count == 1, "every 200 is the one spend")
            #expect(try await scalar(db, "SELECT count(*) FROM credit_transactions WHERE kind = 'consume'") == 1)
            #expect(try await scalar(db, "SELECT balance FROM user_credits") == 993)

            // Once the first has finished, a retry is a replay.
            let retry = try await send(port: port, "/v1/credits/consume", token: key, body: ["amount": 7], headers: ["Idempotency-Key": "burst"])
            #expect(retry.status == 200 && retry.headers["idempotent-replayed"] == "true")
            #expect(retry.body["transaction_id"] as? Int == ok.first?.body["transaction_id"] as? Int)
        }
    }

    @Test func answersAreKeptForTwentyFourHoursThenPurged() async throws {
        // The server's own purge must not run while the test ages keys by hand.
        try await withTallyServer(maintenanceInterval: .seconds(3600)) { client, db in
            let (_, _, key) = try await fundedUser(client, db, credits: 100)
            #expect(try await consume(client, key, idempotencyKey: "day-old", ["amount": 1]).status == .ok)
            #expect(try await consume(client, key, idempotencyKey: "two-days-old", ["amount": 1]).status == .ok)
            try await withSingleConnection(db) { connection in
                try await connection.execute("UPDATE idempotency_keys SET created_at = now() - interval '23 hours 59 minutes' WHERE key = 'day-old'")
                try await connection.execute("UPDATE idempotency_keys SET created_at = now() - interval '48 hours' WHERE key = 'two-days-old'")
            }
            let purged = try await withPostgresClient(db) { try await Idempotency(client: $0).purgeExpired(context: testQueries) }
            #expect(purged == 1)
            #expect(try await consume(client, key, idempotencyKey: "day-old", ["amount": 1]).headers[.idempotentReplayed] == "true")
            // Past retention the key is new again.
            let reused = try await consume(client, key, idempotencyKey: "two-days-old", ["amount": 1])
            #expect(reused.status == .ok && reused.headers[.idempotentReplayed] == nil)
            #expect(try await scalar(db, "SELECT count(*) FROM credit_transactions WHERE kind = 'consume'") == 3)
        }
    }
}
