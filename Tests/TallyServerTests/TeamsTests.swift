import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
@testable import TallyServer

@Suite struct TeamsTests {
    @Test func teamsAndMembersWithRoles() async throws {
        try await withTallyServer { client in
            let owner = try await signup(client, "owner@example.com")
            let member = try await signup(client, "member@example.com")
            let outsider = try await signup(client, "outsider@example.com")
            func call(_ uri: String, _ method: HTTPRequest.Method, _ token: String, _ body: [String: Any]? = nil) async throws -> TestResponse {
                try await client.execute(uri: uri, method: method, headers: [.authorization: "Bearer \(token)"], body: body.map(json))
            }

            let created = try await call("/v1/teams", .post, owner.token, ["name": "Core"])
            #expect(created.status == .created)
            let team = try #require((object(created.body)["team"] as? [String: Any])?["id"] as? String)
            #expect((object(created.body)["team"] as? [String: Any])?["role"] as? String == "owner")

            #expect(try await call("/v1/teams/\(team)/members", .post, owner.token, ["email": "MEMBER@example.com"]).status == .created)
            #expect(try await call("/v1/teams/\(team)/members", .post, owner.token, ["email": "member@example.com"]).status == .conflict)
            #expect(try await call("/v1/teams/\(team)/members", .post, owner.token, ["email": "ghost@example.com"]).status == .notFound)
            #expect(try await call("/v1/teams/\(team)/members", .post, owner.token, ["email": "outsider@example.com", "role": "boss"]).status == .badRequest)

            // A member cannot add people; an outsider does not even see the team.
            #expect(try await call("/v1/teams/\(team)/members", .post, member.token, ["email": "outsider@example.com"]).status == .forbidden)
            #expect(try await call("/v1/teams/\(team)/members", .post, outsider.token, ["email": "outsider@example.com"]).status == .notFound)

            let listed = try await call("/v1/teams", .get, member.token)
            let teams = object(listed.body)["teams"] as? [[String: Any]] ?? []
            #expect(teams.map { $0["role"] as? String } == ["member"])
            #expect((object(try await call("/v1/teams", .get, outsider.token).body)["teams"] as? [Any])?.isEmpty == true)

            // The last owner cannot leave; a member can; unknown ids are 404 problems.
            #expect(try await call("/v1/teams/\(team)/members/\(owner.id)", .delete, owner.token).status == .conflict)
            #expect(try await call("/v1/teams/\(team)/members/\(member.id)", .delete, member.token).status == .noContent)
            let badID = try await call("/v1/teams/not-a-uuid/members/\(member.id)", .delete, owner.token)
            #expect(badID.status == .notFound)
            #expect(badID.headers[.contentType] == "application/problem+json")
            #expect(try await client.execute(uri: "/v1/teams", method: .get).status == .unauthorized)
        }
    }
}
