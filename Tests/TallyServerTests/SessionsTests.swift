import Foundation
import Hummingbird
import HummingbirdTesting
import TallyCredits
import TallyPostgres
import Testing
@testable import TallyServer

/// Sessions users control: they see their sessions, end one or all others, a password change ends the
/// others; an idle session ends, and so does every session at its absolute end.
@Suite struct SessionsTests {
    func login(_ client: some TestClientProtocol, _ email: String, password: String = "password123", agent: String) async throws -> String {
        let response = try await client.execute(
            uri: "/v1/auth/login", method: .post, headers: [.userAgent: agent], body: json(["email": email, "password": password]))
        return try decode(SessionAnswer.self, response, "login \(email)").token
    }

    @Test func usersListAndEndTheirSessions() async throws {
        try await withTallyServer { client in
            let first = try await signup(client, "ada@example.com")
            let laptop = try await login(client, "ada@example.com", agent: "Laptop/1.0")
            let phone = try await login(client, "ada@example.com", agent: "Phone/2.0")
            let other = try await signup(client, "bob@example.com")

            let listed = try await call(client, "/v1/sessions", .get, laptop)
            #expect(listed.status == .ok)
            #expect(!String(buffer: listed.body).contains("tly_sess_"), "no token is shown")
            let sessions = object(listed.body)["sessions"] as? [[String: Any]] ?? []
            #expect(sessions.count == 3)
            #expect(sessions.filter { $0["current"] as? Bool == true }.map { $0["user_agent"] as? String } == ["Laptop/1.0"])
            #expect(Set(sessions.compactMap { $0["user_agent"] as? String }) == ["Laptop/1.0", "Phone/2.0"])
            #expect(sessions.allSatisfy { $0["client_address"] as? String == "127.0.0.1" })
            let phoneID = try #require(sessions.first { $0["user_agent"] as? String == "Phone/2.0" }?["id"] as? String)

            // Another user cannot end it; its owner can, and it stops at once.
            #expect(try await call(client, "/v1/sessions/\(phoneID)", .delete, other.token).status == .notFound)
            #expect(try await call(client, "/v1/me", .get, phone).status == .ok)
            #expect(try await call(client, "/v1/sessions/\(phoneID)", .delete, laptop).status == .noContent)
            #expect(try await call(client, "/v1/me", .get, phone).status == .unauthorized)

            // End every other session: the sign-up's goes, this one stays, Bob's is untouched.
            let ended = try await call(client, "/v1/auth/logout-others", .post, laptop)
            #expect(ended.status == .ok)
            #expect(object(ended.body)["ended_sessions"] as? Int == 1)
            #expect(try await call(client, "/v1/me", .get, first.token).status == .unauthorized)
            #expect(try await call(client, "/v1/me", .get, laptop).status == .ok)
            #expect(try await call(client, "/v1/me", .get, other.token).status == .ok)
            #expect((object(try await call(client, "/v1/sessions", .get, laptop).body)["sessions"] as? [Any])?.count == 1)
        }
    }

    @Test func aPasswordChangeEndsEveryOtherSession() async throws {
        try await withTallyServer { client in
            let first = try await signup(client, "ada@example.com")
            let here = try await login(client, "ada@example.com", agent: "Laptop/1.0")
            let wrong = try await call(client, "/v1/auth/password", .post, here, ["current_password": "not-it-at-all", "new_password": "a new passphrase"])
            #expect(wrong.status == .forbidden)
            #expect(try await call(client, "/v1/auth/password", .post, here, ["current_password": "password123", "new_password": "short"]).status == .badRequest)
            #expect(try await call(client, "/v1/me", .get, first.token).status == .ok, "a refused change ends nothing")

            let changed = try await call(client, "/v1/auth/password", .post, here, ["current_password": "password123", "new_password": "a new passphrase"])
            #expect(changed.status == .ok)
            #expect(object(changed.body)["ended_sessions"] as? Int == 1)
            #expect(try await call(client, "/v1/me", .get, first.token).status == .unauthorized)
            #expect(try await call(client, "/v1/me", .get, here).status == .ok)
            let old = try await client.execute(uri: "/v1/auth/login", method: .post, body: json(["email": "ada@example.com", "password": "password123"]))
            #expect(old.status == .unauthorized)
            _ = try await login(client, "ada@example.com", password: "a new passphrase", agent: "Phone/2.0")
        }
    }

    @Test func anIdleSessionEndsAndAUsedOneSlides() async throws {
        // Idle timeout 4 s: used every second for 6 s it lives on; then 5 s unused, it has ended and is purged.
        try await withTallyServer(configure: {
            $0.sessionIdleTimeout = .seconds(4)
            $0.maintenanceInterval = .milliseconds(500)
        }) { client, db in
            let ada = try await signup(client, "ada@example.com")
            let started = ContinuousClock.now
            while ContinuousClock.now - started < .seconds(6) {
                #expect(try await call(client, "/v1/me", .get, ada.token).status == .ok)
                try await Task.sleep(for: .seconds(1))
            }
            try await Task.sleep(for: .seconds(5))
            #expect(try await call(client, "/v1/me", .get, ada.token).status == .unauthorized)
            let deadline = ContinuousClock.now + .seconds(10)
            while try await scalar(db, "SELECT count(*) FROM sessions") > 0, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(try await scalar(db, "SELECT count(*) FROM sessions") == 0, "the maintenance service purges ended sessions")
        }
    }

    @Test func aSessionEndsAtItsAbsoluteEndHoweverMuchItIsUsed() async throws {
        try await withTallyServer(configure: { $0.sessionLifetime = .seconds(4) }) { client, _ in
            let ada = try await signup(client, "ada@example.com")
            let signedUp = ContinuousClock.now
            var lastOK = signedUp
            while ContinuousClock.now - signedUp < .seconds(9) {
                // When the request was sent: a request sent before the session's end is answered 200 however
                // late the answer comes on a loaded machine, one sent after it 401.
                let sent = ContinuousClock.now
                let status = try await call(client, "/v1/me", .get, ada.token).status
                if status == .ok { lastOK = sent } else { break }
                try await Task.sleep(for: .milliseconds(250))
            }
            let lived = lastOK - signedUp
            #expect(lived >= .seconds(2) && lived < .seconds(4), "used every 250 ms, it lived \(lived) of its 4 s")
        }
    }
}
