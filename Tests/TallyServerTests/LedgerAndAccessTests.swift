import Foundation
import HummingbirdTesting
import TallyCredits
import TallyPostgres
import Testing
@testable import TallyServer

@Suite struct LedgerAndAccessTests {
    @Test func transactionsPageNewestFirstWithCursors() async throws {
        try await withTallyServer { client, db in
            let (_, user, key) = try await fundedUser(client, db, credits: 100)
            for n in 1...24 {
                #expect(try await call(client, "/v1/credits/consume", .post, key, ["amount": 1, "metadata": ["n": n]]).status == .ok)
            }
            let all = try await withPostgresClient(db) { client in
                var ids: [Int] = []
                for try await id in try await client.query("SELECT id FROM credit_transactions ORDER BY id DESC").decode(Int.self) { ids.append(id) }
                return ids
            }
            #expect(all.count == 25)

            var seen: [Int] = []
            var cursor: String?
            var pages = 0
            repeat {
                let query = "/v1/credits/transactions?limit=10" + (cursor.map { "&cursor=\($0)" } ?? "")
                let response = try await call(client, query, .get, user.token)
                #expect(response.status == .ok)
                let page = object(response.body)
                let entries = page["transactions"] as? [[String: Any]] ?? []
                seen += entries.compactMap { $0["id"] as? Int }
                cursor = page["next_cursor"] as? String
                #expect((page["has_more"] as? Bool) == (cursor != nil))
                pages += 1
                if pages == 1 {
                    #expect(entries.first?["kind"] as? String == "consume")
                    #expect((entries.first?["metadata"] as? [String: Any])?["n"] as? Int == 24)
                    #expect(entries.first?["balance_after"] as? Int == 76)
                }
            } while cursor != nil && pages < 10
            #expect(pages == 3)
            #expect(seen == all, "every entry once, newest first")

            // An API key reads the same account's ledger.
            let byKey = object(try await call(client, "/v1/credits/transactions?limit=1", .get, key).body)
            #expect((byKey["transactions"] as? [[String: Any]])?.first?["id"] as? Int == all.first)

            for bad in ["limit=0", "limit=101", "limit=ten", "cursor=bm9wZQ", "cursor=%27%3B--", "cursor=0", "cursor=007", "cursor=1234567890123456789"] {
                let response = try await call(client, "/v1/credits/transactions?\(bad)", .get, user.token)
                #expect(response.status == .badRequest, "\(bad) → \(response.status)")
            }
        }
    }

    @Test func nobodyReadsOrSpendsAnotherAccount() async throws {
        try await withTallyServer { client, db in
            let admin = try await makeAdmin(client, db)
            let alice = try await signup(client, "alice@example.com")
            let bob = try await signup(client, "bob@example.com")
            let team = try await newTeam(client, alice, "Alice's")
            try await grant(client, admin, user: alice.id, 100)
            try await grant(client, admin, team: team, 500)
            try await grant(client, admin, user: bob.id, 10)
            let aliceKey = try await newKey(client, alice)
            let teamKey = try await newKey(client, alice, ["name": "team", "team_id": team])
            let bobKey = try await newKey(client, bob)

            // Bob sees his own account only: not Alice's team's balance or ledger, nor her keys.
            #expect(try await call(client, "/v1/credits/balance?team_id=\(team)", .get, bob.token).status == .notFound)
            #expect(try await call(client, "/v1/credits/transactions?team_id=\(team)", .get, bob.token).status == .notFound)
            #expect(object(try await call(client, "/v1/credits/balance", .get, bob.token).body)["balance"] as? Int == 10)
            let bobsKeys = object(try await call(client, "/v1/api-keys", .get, bob.token).body)["api_keys"] as? [[String: Any]] ?? []
            #expect(bobsKeys.count == 1)
            let aliceKeyID = try #require((object(try await call(client, "/v1/api-keys", .get, alice.token).body)["api_keys"] as? [[String: Any]])?.first?["id"] as? String)
            #expect(try await call(client, "/v1/api-keys/\(aliceKeyID)", .delete, bob.token).status == .notFound)
            // Bob cannot make a key on Alice's team, nor grant himself credits.
            #expect(try await call(client, "/v1/api-keys", .post, bob.token, ["name": "sneaky", "team_id": team]).status == .notFound)
            #expect(try await call(client, "/v1/admin/grants", .post, bob.token, ["user_id": bob.id, "amount": 1000, "description": "mine"]).status == .forbidden)

            // A team key spends from the team; a member may read it, with a member's rights only.
            #expect(object(try await call(client, "/v1/credits/consume", .post, teamKey, ["amount": 5]).body)["balance"] as? Int == 495)
            try await addMember(client, team: team, by: alice, bob)
            #expect(object(try await call(client, "/v1/credits/balance?team_id=\(team)", .get, bob.token).body)["balance"] as? Int == 495)
            #expect(try await call(client, "/v1/api-keys", .post, bob.token, ["name": "member key", "team_id": team]).status == .forbidden)
            #expect(try await call(client, "/v1/admin/grants", .post, bob.token, ["team_id": team, "amount": 1, "description": "x"]).status == .forbidden)

            // Bob's key cannot touch Alice's holds.
            let hold = try #require(object(try await call(client, "/v1/credits/holds", .post, aliceKey, ["amount": 30]).body)["hold_id"] as? String)
            #expect(try await call(client, "/v1/credits/holds/\(hold)/capture", .post, bobKey, ["amount": 30]).status == .notFound)
            #expect(try await call(client, "/v1/credits/holds/\(hold)/release", .post, bobKey).status == .notFound)
            #expect(try await scalar(db, "SELECT count(*) FROM credit_holds WHERE status = 'open'") == 1)

            // A revoked key is refused at once, for every use, even one the server has just seen spend.
            #expect(try await call(client, "/v1/credits/consume", .post, aliceKey, ["amount": 1]).status == .ok)
            #expect(try await call(client, "/v1/api-keys/\(aliceKeyID)", .delete, alice.token).status == .noContent)
            for (path, body) in [("/v1/credits/consume", ["amount": 1]), ("/v1/credits/holds", ["amount": 1]), ("/v1/credits/holds/\(hold)/release", [:])] as [(String, [String: Any])] {
                #expect(try await call(client, path, .post, aliceKey, body).status == .unauthorized, "\(path)")
            }
            #expect(try await call(client, "/v1/credits/balance", .get, aliceKey).status == .unauthorized)
            #expect(try await scalar(db, "SELECT balance FROM user_credits WHERE user_id = \(UUID(uuidString: alice.id)!)") == 99)
        }
    }
}
