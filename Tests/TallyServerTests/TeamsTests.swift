import Foundation
import Hummingbird
import HummingbirdTesting
import PostgresNIO
import TallyPostgres
import Testing
@testable import TallyServer

@Suite struct TeamsTests {
    @Test func teamsInvitationsAndMembersWithRoles() async throws {
        try await withTallyServer { client, db in
            let owner = try await signup(client, "owner@example.com")
            let member = try await signup(client, "member@example.com")
            let outsider = try await signup(client, "outsider@example.com")
            func call(_ uri: String, _ method: HTTPRequest.Method, _ token: String, _ body: [String: Any]? = nil) async throws -> TestResponse {
                try await client.execute(uri: uri, method: method, headers: [.authorization: "Bearer \(token)"], body: body.map(json))
            }
            func invitations(_ uri: String, _ token: String) async throws -> [[String: Any]] {
                object(try await call(uri, .get, token).body)["invitations"] as? [[String: Any]] ?? []
            }

            let created = try await call("/v1/teams", .post, owner.token, ["name": "Core"])
            #expect(created.status == .created)
            let team = try #require((object(created.body)["team"] as? [String: Any])?["id"] as? String)
            #expect((object(created.body)["team"] as? [String: Any])?["role"] as? String == "owner")

            // An invitation answers the same whether the address has an account or not.
            let known = try await call("/v1/teams/\(team)/invitations", .post, owner.token, ["email": "MEMBER@example.com"])
            let unknown = try await call("/v1/teams/\(team)/invitations", .post, owner.token, ["email": "ghost@example.com"])
            #expect(known.status == .created && unknown.status == .created)
            let knownInvitation = try #require(object(known.body)["invitation"] as? [String: Any])
            let ghostInvitation = try #require(object(unknown.body)["invitation"] as? [String: Any])
            #expect(Set(knownInvitation.keys) == Set(ghostInvitation.keys))
            #expect(knownInvitation["role"] as? String == "member" && knownInvitation["invited_by"] as? String == "owner@example.com")
            #expect(try await call("/v1/teams/\(team)/invitations", .post, owner.token, ["email": "outsider@example.com", "role": "boss"]).status == .badRequest)
            // Inviting again renews: still one pending invitation for the address.
            #expect(try await call("/v1/teams/\(team)/invitations", .post, owner.token, ["email": "member@example.com"]).status == .created)
            #expect(try await invitations("/v1/teams/\(team)/invitations", owner.token).count == 2)
            let id = try #require(knownInvitation["id"] as? String)

            // Only the invited address sees and accepts it; an outsider does not even see the team.
            #expect(try await invitations("/v1/invitations", member.token).map { $0["id"] as? String } == [id])
            #expect(try await invitations("/v1/invitations", outsider.token).isEmpty)
            #expect(try await call("/v1/invitations/\(id)/accept", .post, outsider.token).status == .notFound)
            #expect(try await call("/v1/teams/\(team)/invitations", .post, outsider.token, ["email": "outsider@example.com"]).status == .notFound)
            let accepted = try await call("/v1/invitations/\(id)/accept", .post, member.token)
            #expect(accepted.status == .ok)
            #expect((object(accepted.body)["team"] as? [String: Any])?["role"] as? String == "member")
            #expect(try await call("/v1/invitations/\(id)/accept", .post, member.token).status == .notFound, "an invitation is used once")
            #expect(try await call("/v1/teams/\(team)/invitations", .post, owner.token, ["email": "member@example.com"]).status == .conflict)

            // A member cannot invite, nor see invitations.
            #expect(try await call("/v1/teams/\(team)/invitations", .post, member.token, ["email": "outsider@example.com"]).status == .forbidden)
            #expect(try await call("/v1/teams/\(team)/invitations", .get, member.token).status == .forbidden)

            // Withdrawn or declined, an invitation cannot be accepted.
            let toOutsider = try await call("/v1/teams/\(team)/invitations", .post, owner.token, ["email": "outsider@example.com"])
            let outsiderID = try #require((object(toOutsider.body)["invitation"] as? [String: Any])?["id"] as? String)
            #expect(try await call("/v1/teams/\(team)/invitations/\(outsiderID)", .delete, owner.token).status == .noContent)
            #expect(try await call("/v1/invitations/\(outsiderID)/accept", .post, outsider.token).status == .notFound)
            let again = try await call("/v1/teams/\(team)/invitations", .post, owner.token, ["email": "outsider@example.com"])
            let againID = try #require((object(again.body)["invitation"] as? [String: Any])?["id"] as? String)
            #expect(againID != outsiderID)
            #expect(try await call("/v1/invitations/\(againID)", .delete, outsider.token).status == .noContent)
            #expect(try await call("/v1/invitations/\(againID)/accept", .post, outsider.token).status == .notFound)

            let listed = try await call("/v1/teams", .get, member.token)
            let teams = object(listed.body)["teams"] as? [[String: Any]] ?? []
            #expect(teams.map { $0["role"] as? String } == ["member"])
            #expect((object(try await call("/v1/teams", .get, outsider.token).body)["teams"] as? [Any])?.isEmpty == true)
            #expect(try await scalar(db, "SELECT count(*) FROM team_members") == 2)

            // The last owner cannot leave; a member can; unknown ids are 404 problems.
            #expect(try await call("/v1/teams/\(team)/members/\(owner.id)", .delete, owner.token).status == .conflict)
            #expect(try await call("/v1/teams/\(team)/members/\(member.id)", .delete, member.token).status == .noContent)
            let badID = try await call("/v1/teams/not-a-uuid/members/\(member.id)", .delete, owner.token)
            #expect(badID.status == .notFound)
            #expect(badID.headers[.contentType] == "application/problem+json")
            #expect(try await client.execute(uri: "/v1/teams", method: .get).status == .unauthorized)
        }
    }

    /// What an admin may give ends with their role: only owners invite owners, and an admin's pending
    /// invitations die when they are removed or demoted (the database revokes them, migration 0017).
    @Test func anInvitationLapsesWithItsInvitersRole() async throws {
        try await withTallyServer { client, db in
            let owner = try await signup(client, "owner@example.com")
            let dana = try await signup(client, "dana@example.com")
            let erin = try await signup(client, "erin@example.com")
            let fay = try await signup(client, "fay@example.com")
            let team = try await newTeam(client, owner, "Core")
            try await addMember(client, team: team, by: owner, dana, role: "admin")
            #expect(try await call(client, "/v1/teams/\(team)/invitations", .post, dana.token, ["email": "erin@example.com", "role": "owner"]).status == .forbidden)
            let toErin = try await call(client, "/v1/teams/\(team)/invitations", .post, dana.token, ["email": "erin@example.com", "role": "admin"])
            let erinID = try #require((object(toErin.body)["invitation"] as? [String: Any])?["id"] as? String)
            let toFay = try await call(client, "/v1/teams/\(team)/invitations", .post, dana.token, ["email": "fay@example.com"])
            let fayID = try #require((object(toFay.body)["invitation"] as? [String: Any])?["id"] as? String)

            // Demoted by SQL typed by hand, dana's invitations are revoked all the same.
            try await withSingleConnection(db) { connection in
                try await connection.execute(PostgresQuery(unsafeSQL: "UPDATE team_members SET role = 'member' WHERE user_id = '\(dana.id)'"))
            }
            #expect(try await call(client, "/v1/invitations/\(erinID)/accept", .post, erin.token).status == .notFound)
            #expect(try await call(client, "/v1/invitations/\(fayID)/accept", .post, fay.token).status == .notFound)
            #expect(try await scalar(db, "SELECT count(*) FROM team_invitations WHERE invited_by = '\(unescaped: dana.id)' AND revoked_at IS NOT NULL") == 2)
            #expect(try await scalar(db, "SELECT count(*) FROM team_members") == 2)
        }
    }
}
