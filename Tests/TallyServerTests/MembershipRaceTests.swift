import Foundation
import Hummingbird
import HummingbirdTesting
import PostgresNIO
import TallyCredits
import TallyPostgres
import Testing
@testable import TallyServer

/// Access ends the moment it is taken away: a team key lives only while its creator is one of the team's
/// owners or admins, whatever order requests and removals commit in.
@Suite struct MembershipRaceTests {
    @Test func anAdminRemovedWhileMakingKeysKeepsNoLiveKey() async throws {
        try await withTallyServer { client, db in
            let port = try #require(client.port)
            let root = try await makeAdmin(client, db)
            let owner = try await signup(client, "owner@example.com")
            let admin = try await signup(client, "team-admin@example.com")
            let team = try await newTeam(client, owner, "Core")
            try await addMember(client, team: team, by: owner, admin, role: "admin")
            try await grant(client, root, team: team, 1_000)

            // 40 key creations by the admin (8 at a time, 5 each); the owner removes the admin once 5 are made.
            let made = Counter()
            let removal = Task {
                while await made.value < 5 { try await Task.sleep(for: .milliseconds(2)) }
                return try await send(port: port, "/v1/teams/\(team)/members/\(admin.id)", "DELETE", token: owner.token)
            }
            let answers = try await withThrowingTaskGroup(of: [(Int, String?)].self) { group in
                for worker in 0..<8 {
                    group.addTask {
                        var answers: [(Int, String?)] = []
                        for attempt in 0..<5 {
                            let answer = try await send(port: port, "/v1/api-keys", token: admin.token, body: ["name": "k\(worker)-\(attempt)", "team_id": team])
                            if answer.status == 201 { await made.add() }
                            answers.append((answer.status, answer.body["key"] as? String))
                        }
                        return answers
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            #expect(try await removal.value.status == 204)
            let created = answers.filter { $0.0 == 201 }.compactMap(\.1)
            let refused = answers.filter { $0.0 == 403 || $0.0 == 404 }
            #expect(answers.count == 40)
            #expect(created.count + refused.count == 40, "every answer is 201, 403 or 404: \(answers.map(\.0))")
            #expect(created.count >= 5 && refused.count >= 1, "the removal fell among the creations: \(created.count) made, \(refused.count) refused")

            // Every key answered 201 is dead everywhere it could be used.
            for key in created {
                #expect(try await call(client, "/v1/credits/consume", .post, key, ["amount": 1]).status == .unauthorized)
                #expect(try await call(client, "/v1/credits/balance", .get, key).status == .unauthorized)
                #expect(try await call(client, "/v1/credits/holds", .post, key, ["amount": 1]).status == .unauthorized)
                #expect(try await call(client, "/v1/credits/transactions", .get, key).status == .unauthorized)
            }
            #expect(try await scalar(db, "SELECT count(*) FROM api_keys WHERE revoked_at IS NULL") == 0)
            #expect(try await scalar(db, "SELECT count(*) FROM api_keys") == Int64(created.count))
            #expect(try await scalar(db, "SELECT balance FROM user_credits WHERE team_id = \(UUID(uuidString: team)!)") == 1_000)
        }
    }

    @Test func theDatabaseKeepsTeamKeysToOwnersAndAdmins() async throws {
        try await withTallyServer { client, db in
            let owner = try await signup(client, "owner@example.com")
            let admin = try await signup(client, "team-admin@example.com")
            let member = try await signup(client, "member@example.com")
            let team = try await newTeam(client, owner, "Core")
            let teamID = try #require(UUID(uuidString: team))
            try await addMember(client, team: team, by: owner, admin, role: "admin")
            try await addMember(client, team: team, by: owner, member)

            // Members see the team's members; others do not see the team.
            let listed = try await call(client, "/v1/teams/\(team)/members", .get, member.token)
            #expect(listed.status == .ok)
            let members = object(listed.body)["members"] as? [[String: Any]] ?? []
            #expect(members.map { $0["email"] as? String } == ["owner@example.com", "team-admin@example.com", "member@example.com"])
            #expect(members.map { $0["role"] as? String } == ["owner", "admin", "member"])
            let outsider = try await signup(client, "outsider@example.com")
            #expect(try await call(client, "/v1/teams/\(team)/members", .get, outsider.token).status == .notFound)

            // A key made by SQL for a plain member is refused by the database itself.
            let memberID = try #require(UUID(uuidString: member.id))
            await #expect(throws: PSQLError.self) {
                try await withSingleConnection(db) {
                    try await $0.execute("INSERT INTO api_keys (user_id, team_id, name, prefix, key_hash) VALUES (\(memberID), \(teamID), 'x', 'tly_x', 'h')")
                }
            }

            // Making the admin a plain member by SQL revokes their team key in that statement; so does deleting
            // the owner's membership row by hand (the owner's key).
            let adminKey = try await newKey(client, admin, ["name": "a", "team_id": team])
            let ownerKey = try await newKey(client, owner, ["name": "o", "team_id": team])
            let ownKey = try await newKey(client, admin, ["name": "own"])
            #expect(try await call(client, "/v1/credits/balance", .get, adminKey).status == .ok)
            let adminID = try #require(UUID(uuidString: admin.id))
            let ownerID = try #require(UUID(uuidString: owner.id))
            try await withSingleConnection(db) { try await $0.execute("UPDATE team_members SET role = 'member' WHERE team_id = \(teamID) AND user_id = \(adminID)") }
            #expect(try await call(client, "/v1/credits/balance", .get, adminKey).status == .unauthorized)
            #expect(try await call(client, "/v1/credits/balance", .get, ownerKey).status == .ok)
            try await withSingleConnection(db) { try await $0.execute("DELETE FROM team_members WHERE team_id = \(teamID) AND user_id = \(ownerID)") }
            #expect(try await call(client, "/v1/credits/balance", .get, ownerKey).status == .unauthorized)
            // A personal key does not depend on any team.
            #expect(try await call(client, "/v1/credits/balance", .get, ownKey).status == .ok)
            let reasons = try await withPostgresClient(db) { client in
                var reasons: [String] = []
                for try await reason in try await client.query("SELECT revoked_reason FROM api_keys WHERE revoked_at IS NOT NULL ORDER BY name").decode(String.self) {
                    reasons.append(reason)
                }
                return reasons
            }
            #expect(reasons == ["its creator is no longer a team owner or admin", "its creator left or was removed from the team"])
        }
    }

    @Test func aRevokedKeysHoldsAreReleasedAtOnce() async throws {
        try await withTallyServer { client, db in
            let (_, user, key) = try await fundedUser(client, db, credits: 100)
            let placed = try await call(client, "/v1/credits/holds", .post, key, ["amount": 60, "ttl_seconds": 3_600])
            #expect(placed.status == .created)
            let holdID = try #require(object(placed.body)["hold_id"] as? String)
            let before = object(try await call(client, "/v1/credits/balance", .get, user.token).body)
            #expect(before["held"] as? Int == 60 && before["available"] as? Int == 40)

            let keys = object(try await call(client, "/v1/api-keys", .get, user.token).body)["api_keys"] as? [[String: Any]] ?? []
            let keyID = try #require(keys.first?["id"] as? String)
            #expect(try await call(client, "/v1/api-keys/\(keyID)", .delete, user.token).status == .noContent)

            let after = object(try await call(client, "/v1/credits/balance", .get, user.token).body)
            #expect(after["balance"] as? Int == 100 && after["held"] as? Int == 0 && after["available"] as? Int == 100, "\(after)")
            #expect(try await scalar(db, "SELECT count(*) FROM credit_holds WHERE id = \(UUID(uuidString: holdID)!) AND status = 'expired'") == 1)
            #expect(try await scalar(db, "SELECT held FROM api_key_credits") == 0)
            let report = try await audit(db)
            #expect(report.ok, "\(report.failures)")
        }
    }
}

/// A count tasks share.
actor Counter {
    private(set) var value = 0
    func add() { value += 1 }
}
