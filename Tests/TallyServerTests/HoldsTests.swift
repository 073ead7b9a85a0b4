import Foundation
import Hummingbird
import HummingbirdTesting
import TallyCredits
import TallyPostgres
import Testing
@testable import TallyServer

@Suite struct HoldsTests {
    @Test func reserveCaptureAndReleaseMoveAvailableAndTheLedger() async throws {
        try await withTallyServer { client, db in
            let (_, _, key) = try await fundedUser(client, db, credits: 100)

            let placed = try await call(client, "/v1/credits/holds", .post, key, ["amount": 30, "ttl_seconds": 60, "description": "render"])
            #expect(placed.status == .created)
            let hold = object(placed.body)
            let holdID = try #require(hold["hold_id"] as? String)
            #expect(hold["status"] as? String == "open")
            #expect(hold["balance"] as? Int == 100 && hold["held"] as? Int == 30 && hold["available"] as? Int == 70)
            let expires = try #require(ISO8601DateFormatter().date(from: hold["expires_at"] as? String ?? ""))
            #expect(abs(expires.timeIntervalSinceNow - 60) < 10)

            let balance = object(try await call(client, "/v1/credits/balance", .get, key).body)
            #expect(balance["balance"] as? Int == 100 && balance["held"] as? Int == 30 && balance["available"] as? Int == 70)
            // Held credits cannot be spent twice.
            #expect(try await call(client, "/v1/credits/consume", .post, key, ["amount": 71]).status.code == 402)
            #expect(try await call(client, "/v1/credits/holds", .post, key, ["amount": 71]).status.code == 402)

            #expect(try await call(client, "/v1/credits/holds/\(holdID)/capture", .post, key, ["amount": 31]).status == .badRequest)
            let captured = try await call(client, "/v1/credits/holds/\(holdID)/capture", .post, key, ["amount": 20])
            #expect(captured.status == .ok)
            let capture = object(captured.body)
            #expect(capture["status"] as? String == "captured")
            #expect(capture["captured"] as? Int == 20 && capture["released"] as? Int == 10)
            #expect(capture["balance"] as? Int == 80 && capture["held"] as? Int == 0 && capture["available"] as? Int == 80)
            #expect(try await scalar(db, "SELECT amount FROM credit_transactions WHERE kind = 'capture' AND hold_id = \(UUID(uuidString: holdID)!)") == -20)
            let again = try await call(client, "/v1/credits/holds/\(holdID)/capture", .post, key, ["amount": 5])
            #expect(again.status == .conflict)
            #expect(object(again.body)["detail"] as? String == "hold \(holdID.lowercased()) is already captured")

            // Release gives all of it back; a second release is a conflict.
            let second = try #require(object(try await call(client, "/v1/credits/holds", .post, key, ["amount": 50]).body)["hold_id"] as? String)
            #expect(object(try await call(client, "/v1/credits/balance", .get, key).body)["available"] as? Int == 30)
            let released = try await call(client, "/v1/credits/holds/\(second)/release", .post, key)
            #expect(released.status == .ok)
            #expect(object(released.body)["released"] as? Int == 50 && object(released.body)["available"] as? Int == 80)
            #expect(try await call(client, "/v1/credits/holds/\(second)/release", .post, key).status == .conflict)

            // Capture with no body takes the whole hold.
            let third = try #require(object(try await call(client, "/v1/credits/holds", .post, key, ["amount": 15]).body)["hold_id"] as? String)
            let whole = object(try await call(client, "/v1/credits/holds/\(third)/capture", .post, key).body)
            #expect(whole["captured"] as? Int == 15 && whole["balance"] as? Int == 65)

            #expect(try await scalar(db, "SELECT count(*) FROM credit_holds WHERE status = 'open'") == 0)
            let report = try await audit(db)
            #expect(report.ok, "\(report.failures)")
        }
    }

    @Test func aHoldIsSettledOnlyByItsKeyOrTheAccountsManagers() async throws {
        try await withTallyServer { client, db in
            let (root, user, key) = try await fundedUser(client, db, credits: 100)
            let otherKey = try await newKey(client, user, ["name": "second"])
            let stranger = try await signup(client, "stranger@example.com")
            func place(_ key: String, _ amount: Int) async throws -> String {
                try #require(object(try await call(client, "/v1/credits/holds", .post, key, ["amount": amount]).body)["hold_id"] as? String)
            }

            // Another key of the same account does not see the hold; the account's owner settles it by session.
            let mine = try await place(key, 30)
            #expect(try await call(client, "/v1/credits/holds/\(mine)/capture", .post, otherKey).status == .notFound)
            #expect(try await call(client, "/v1/credits/holds/\(mine)/release", .post, otherKey).status == .notFound)
            #expect(try await call(client, "/v1/credits/holds/\(mine)/release", .post, stranger.token).status == .notFound)
            let released = try await call(client, "/v1/credits/holds/\(mine)/release", .post, user.token)
            #expect(released.status == .ok)
            #expect(object(released.body)["released"] as? Int == 30 && object(released.body)["available"] as? Int == 100)

            // A team's hold: its members and outsiders cannot settle it; an owner's session captures it, charged
            // to the key that placed it.
            let owner = try await signup(client, "owner@example.com")
            let member = try await signup(client, "member@example.com")
            let team = try await newTeam(client, owner, "Core")
            try await addMember(client, team: team, by: owner, member)
            try await grant(client, root, team: team, 50)
            let teamKey = try await newKey(client, owner, ["name": "team", "team_id": team])
            let teamHold = try await place(teamKey, 20)
            #expect(try await call(client, "/v1/credits/holds/\(teamHold)/capture", .post, member.token).status == .notFound)
            #expect(try await call(client, "/v1/credits/holds/\(teamHold)/capture", .post, user.token).status == .notFound)
            #expect(try await call(client, "/v1/credits/holds/\(teamHold)/capture", .post, key).status == .notFound)
            let captured = try await call(client, "/v1/credits/holds/\(teamHold)/capture", .post, owner.token, ["amount": 15])
            #expect(captured.status == .ok)
            #expect(object(captured.body)["captured"] as? Int == 15 && object(captured.body)["balance"] as? Int == 35)
            #expect(try await scalar(db, """
                SELECT count(*) FROM credit_transactions t JOIN api_keys k ON k.id = t.api_key_id
                WHERE t.kind = 'capture' AND t.hold_id = \(UUID(uuidString: teamHold)!) AND k.name = 'team'
                """) == 1)

            // A revoked key's hold is released: settling it by session says so.
            let last = try await place(key, 10)
            let keys = object(try await call(client, "/v1/api-keys", .get, user.token).body)["api_keys"] as? [[String: Any]] ?? []
            let keyID = try #require(keys.first { $0["name"] as? String == "key" }?["id"] as? String)
            #expect(try await call(client, "/v1/api-keys/\(keyID)", .delete, user.token).status == .noContent)
            let late = try await call(client, "/v1/credits/holds/\(last)/capture", .post, user.token)
            #expect(late.status == .conflict)
            #expect((object(late.body)["detail"] as? String)?.contains("revoked") == true)
            let report = try await audit(db)
            #expect(report.ok, "\(report.failures)")
        }
    }

    @Test func holdsCountAgainstTheKeysLimitUntilTheySettle() async throws {
        try await withTallyServer { client, db in
            let (_, _, key) = try await fundedUser(client, db, credits: 1000, key: ["name": "limited", "credit_limit": 50])

            let hold = try #require(object(try await call(client, "/v1/credits/holds", .post, key, ["amount": 40]).body)["hold_id"] as? String)
            let refused = try await call(client, "/v1/credits/consume", .post, key, ["amount": 20])
            #expect(refused.status.code == 402)
            #expect(object(refused.body)["type"] as? String == "/problems/key-limit-exceeded")
            #expect(try await call(client, "/v1/credits/holds", .post, key, ["amount": 11]).status.code == 402)
            // Capturing less than held frees the rest of the allowance.
            #expect(try await call(client, "/v1/credits/holds/\(hold)/capture", .post, key, ["amount": 25]).status == .ok)
            #expect(try await call(client, "/v1/credits/consume", .post, key, ["amount": 25]).status == .ok)
            #expect(try await call(client, "/v1/credits/consume", .post, key, ["amount": 1]).status.code == 402)
            #expect(try await scalar(db, "SELECT used FROM api_key_credits") == 50)
            #expect(try await scalar(db, "SELECT held FROM api_key_credits") == 0)
        }
    }

    @Test func expiredHoldsReleaseThemselvesInTheBackground() async throws {
        try await withTallyServer(maintenanceInterval: .milliseconds(100)) { client, db in
            let (_, _, key) = try await fundedUser(client, db, credits: 100)
            let hold = try #require(object(try await call(client, "/v1/credits/holds", .post, key, ["amount": 60, "ttl_seconds": 600]).body)["hold_id"] as? String)
            #expect(try await scalar(db, "SELECT held FROM user_credits") == 60)

            // Time passes: no request touches the account, the background task releases it.
            try await withSingleConnection(db) { try await $0.execute("UPDATE credit_holds SET expires_at = now() - interval '1 second'") }
            var held: Int64 = -1
            for _ in 0..<50 where held != 0 {
                try await Task.sleep(for: .milliseconds(100))
                held = try await scalar(db, "SELECT held FROM user_credits")
            }
            #expect(held == 0)
            #expect(try await scalar(db, "SELECT count(*) FROM credit_holds WHERE status = 'expired'") == 1)
            #expect(try await scalar(db, "SELECT held FROM api_key_credits") == 0)
            let late = try await call(client, "/v1/credits/holds/\(hold)/capture", .post, key, ["amount": 10])
            #expect(late.status == .conflict)
            #expect((object(late.body)["detail"] as? String ?? "").contains("expired"))
            #expect(object(try await call(client, "/v1/credits/balance", .get, key).body)["available"] as? Int == 100)
        }
    }

    @Test func anExpiredHoldIsReleasedWhenTheAccountIsRead() async throws {
        try await withTallyServer(maintenanceInterval: .seconds(3600)) { client, db in
            let (_, user, key) = try await fundedUser(client, db, credits: 100)
            _ = try await call(client, "/v1/credits/holds", .post, key, ["amount": 60])
            try await withSingleConnection(db) { try await $0.execute("UPDATE credit_holds SET expires_at = now() - interval '1 second'") }
            let balance = object(try await call(client, "/v1/credits/balance", .get, user.token).body)
            #expect(balance["held"] as? Int == 0 && balance["available"] as? Int == 100)
            #expect(try await scalar(db, "SELECT count(*) FROM credit_holds WHERE status = 'expired'") == 1)
        }
    }

    @Test func heldCreditsOutliveTheirGrantUntilTheHoldSettles() async throws {
        try await withTallyServer { client, db in
            let (_, _, key) = try await fundedUser(client, db, credits: 100, expires: "2099-01-01T00:00:00Z")
            let hold = try #require(object(try await call(client, "/v1/credits/holds", .post, key, ["amount": 60]).body)["hold_id"] as? String)
            try await withSingleConnection(db) { try await $0.execute("UPDATE credit_grants SET expires_at = now() - interval '1 second'") }

            // The unheld 40 expire; the held 60 stay reserved for the hold.
            let balance = object(try await call(client, "/v1/credits/balance", .get, key).body)
            #expect(balance["balance"] as? Int == 60 && balance["held"] as? Int == 60 && balance["available"] as? Int == 0)
            let captured = object(try await call(client, "/v1/credits/holds/\(hold)/capture", .post, key, ["amount": 50]).body)
            // What the capture did not take expires with its grant.
            #expect(captured["balance"] as? Int == 0 && captured["available"] as? Int == 0)
            #expect(try await scalar(db, "SELECT -sum(amount)::bigint FROM credit_transactions WHERE kind = 'expire'") == 50)
            let report = try await audit(db)
            #expect(report.ok, "\(report.failures)")
        }
    }

    @Test func badHoldRequestsAre4xxProblems() async throws {
        try await withTallyServer { client, db in
            let (_, user, key) = try await fundedUser(client, db, credits: 100)
            let cases: [(String, [String: Any]?, Int)] = [
                ("/v1/credits/holds", ["amount": 0], 400),
                ("/v1/credits/holds", ["amount": -5], 400),
                ("/v1/credits/holds", ["amount": "10"], 400),
                ("/v1/credits/holds", ["amount": 10, "ttl_seconds": 0], 400),
                ("/v1/credits/holds", ["amount": 10, "ttl_seconds": 604801], 400),
                ("/v1/credits/holds", ["amount": 10, "ttl": 60], 400),
                ("/v1/credits/holds", ["amount": 10.5], 400),
                ("/v1/credits/holds", ["amount": 10_000_000_000_000_000_000.0], 400),
                ("/v1/credits/holds/not-a-uuid/capture", [:], 404),
                ("/v1/credits/holds/\(UUID())/capture", [:], 404),
                ("/v1/credits/holds/\(UUID())/release", nil, 404),
            ]
            for (path, body, status) in cases {
                let response = try await call(client, path, .post, key, body)
                #expect(response.status.code == status, "\(path) \(String(describing: body)) → \(response.status.code) \(String(buffer: response.body))")
                #expect(response.headers[.contentType] == "application/problem+json")
            }
            // jsonb cannot hold NUL either, however deep.
            let nul = try await client.execute(
                uri: "/v1/credits/consume", method: .post, headers: [.authorization: "Bearer \(key)"],
                body: ByteBuffer(string: #"{"amount": 1, "metadata": {"tags": ["ok", "x\u0000"]}}"#))
            #expect(nul.status == .badRequest)
            // A session is not an API key: holds spend, so they need one.
            #expect(try await call(client, "/v1/credits/holds", .post, user.token, ["amount": 10]).status == .unauthorized)
            let hold = try #require(object(try await call(client, "/v1/credits/holds", .post, key, ["amount": 10]).body)["hold_id"] as? String)
            #expect(try await call(client, "/v1/credits/holds/\(hold)/capture", .post, key, ["amount": 0]).status == .badRequest)
            #expect(try await call(client, "/v1/credits/holds/\(hold)/capture", .post, key, ["amount": -1]).status == .badRequest)
            #expect(try await scalar(db, "SELECT count(*) FROM credit_holds") == 1)
        }
    }
}
