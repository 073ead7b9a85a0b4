import Foundation
import Hummingbird
import HummingbirdTesting
import PostgresNIO
import TallyCredits
import TallyPostgres
import Testing
@testable import TallyServer

/// Erasing a person keeps the ledger: every row they had stays, the account closes with entries of its own,
/// access ends at once, and nothing in the database says who they were.
@Suite struct AccountErasureTests {
    static func ledger(_ db: ConnectionSettings, of user: String) async throws -> [String] {
        try await withPostgresClient(db) { client in
            var rows: [String] = []
            for try await row in try await client.query(
                """
                SELECT t::text FROM credit_transactions t JOIN user_credits a ON a.id = t.account_id
                WHERE a.user_id = \(UUID(uuidString: user)) ORDER BY t.id
                """
            ).decode(String.self) { rows.append(row) }
            return rows
        }
    }

    @Test func anErasedUserKeepsEveryLedgerRowAndNothingPersonal() async throws {
        try await withTallyServer { client, db in
            let admin = try await makeAdmin(client, db)
            let ada = try await signup(client, "ada.lovelace@example.com")
            let owner = try await signup(client, "owner@example.com")
            try await withSingleConnection(db) { try await $0.execute("UPDATE users SET name = 'Ada Lovelace' WHERE email = 'ada.lovelace@example.com'") }
            try await grant(client, admin, user: ada.id, 100)
            let key = try await newKey(client, ada)
            #expect(try await call(client, "/v1/credits/consume", .post, key, ["amount": 30, "description": "search"]).status == .ok)
            #expect(try await call(client, "/v1/credits/holds", .post, key, ["amount": 20]).status == .created)
            // Ada is in a team (joined by invitation), owns one of her own with nobody else, and has a reset
            // mail queued and another invitation pending.
            let team = try await newTeam(client, owner, "Core")
            try await addMember(client, team: team, by: owner, ada, role: "admin")
            let teamKey = try await newKey(client, ada, ["name": "team", "team_id": team])
            #expect(try await call(client, "/v1/teams", .post, ada.token, ["name": "Ada's own"]).status == .created)
            let other = try await newTeam(client, owner, "Other")
            #expect(try await call(client, "/v1/teams/\(other)/invitations", .post, owner.token, ["email": "ada.lovelace@example.com"]).status == .created)
            #expect(try await call(client, "/v1/auth/password-reset", .post, nil, ["email": "ada.lovelace@example.com"]).status == .accepted)
            let before = try await Self.ledger(db, of: ada.id)
            #expect(before.count == 2, "a grant and a spend: \(before)")

            let erased = try await withPostgresClient(db) { client in
                try await Ledger(client: client).eraseUser(try #require(UUID(uuidString: ada.id)), by: .operator("test"), context: testQueries)
            }
            #expect(erased.forfeited == 70 && erased.revokedKeys == 2 && erased.leftTeams == 2 && erased.endedSessions >= 1)

            // The ledger: every row as it was, then the closing entry; the account at zero, nothing held.
            let after = try await Self.ledger(db, of: ada.id)
            #expect(Array(after.prefix(before.count)) == before)
            #expect(after.count == before.count + 1 && after.last?.contains("account closed") == true, "\(after)")
            #expect(Int64(after.count) == erased.ledgerEntries)
            #expect(try await scalar(db, "SELECT balance + held FROM user_credits WHERE user_id = '\(unescaped: ada.id)'") == 0)
            let report = try await audit(db)
            #expect(report.ok, "\(report.failures)")

            // Access ended at once: her session, her keys, her team key.
            #expect(try await call(client, "/v1/me", .get, ada.token).status == .unauthorized)
            #expect(try await call(client, "/v1/credits/consume", .post, key, ["amount": 1]).status == .unauthorized)
            #expect(try await call(client, "/v1/credits/consume", .post, teamKey, ["amount": 1]).status == .unauthorized)
            #expect(try await call(client, "/v1/auth/login", .post, nil, ["email": "ada.lovelace@example.com", "password": "password123"]).status == .unauthorized)
            let members = object(try await call(client, "/v1/teams/\(team)/members", .get, owner.token).body)["members"] as? [[String: Any]] ?? []
            #expect(members.compactMap { $0["email"] as? String } == ["owner@example.com"])

            // Nothing personal is left anywhere, the audit log included; the erasure is in it by id.
            let dump = try await everyRowAsText(db)
            #expect(!dump.lowercased().contains("ada.lovelace@example.com") && !dump.contains("Ada Lovelace"))
            #expect(try await scalar(db, "SELECT count(*) FROM admin_audit WHERE action = 'erase_user' AND subject->>'user_id' = '\(unescaped: ada.id)'") == 1)
            // The address is free again: a new account can be made with it.
            #expect(try await call(client, "/v1/auth/signup", .post, nil, ["email": "ada.lovelace@example.com", "password": "password123"]).status == .accepted)
            #expect(try await scalar(db, "SELECT count(*) FROM users WHERE email = 'ada.lovelace@example.com' AND email_verified_at IS NULL") == 1)

            // Deleting the user row is still refused while its ledger exists.
            try await withSingleConnection(db) { connection in
                await #expect(throws: (any Error).self) {
                    try await connection.execute(PostgresQuery(unsafeSQL: "DELETE FROM users WHERE id = '\(ada.id)'"))
                }
            }
        }
    }

    /// A team keeps an owner: the last owner of a team with other members is not erased until another owns it.
    @Test func theLastOwnerOfATeamWithMembersIsNotErased() async throws {
        try await withTallyServer { client, db in
            let owner = try await signup(client, "owner@example.com")
            let member = try await signup(client, "member@example.com")
            let team = try await newTeam(client, owner, "Core")
            try await addMember(client, team: team, by: owner, member)
            let ownerID = try #require(UUID(uuidString: owner.id))
            await #expect { try await withPostgresClient(db) { try await Ledger(client: $0).eraseUser(ownerID, by: .operator("test"), context: testQueries) } } throws: {
                "\($0)".contains("last owner of the team Core")
            }
            #expect(try await call(client, "/v1/me", .get, owner.token).status == .ok, "nothing changed")
            try await withSingleConnection(db) { try await $0.execute(PostgresQuery(unsafeSQL: "UPDATE team_members SET role = 'owner' WHERE user_id = '\(member.id)'")) }
            _ = try await withPostgresClient(db) { try await Ledger(client: $0).eraseUser(ownerID, by: .operator("test"), context: testQueries) }
            await #expect { try await withPostgresClient(db) { try await Ledger(client: $0).eraseUser(ownerID, by: .operator("test"), context: testQueries) } } throws: {
                "\($0)".contains("erased already")
            }
        }
    }
}
