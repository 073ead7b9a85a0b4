import Foundation
import Hummingbird
import HummingbirdBcrypt
import HummingbirdTesting
import PostgresNIO
import TallyCredits
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyServer

/// Runs `body` against a live server on a fresh database with Tally's schema.
@Suite struct AuthTests {
    @Test func signupVerifyLoginMeLogout() async throws {
        try await withTallyServer { client, db in
            let signup = try await client.execute(uri: "/v1/auth/signup", method: .post, body: json(["email": "Ada@Example.com", "password": "correct horse", "name": "Ada"]))
            #expect(signup.status == .accepted)
            #expect(object(signup.body)["token"] == nil, "no session before the address is proven")
            // The right password, before the link is followed: no session, and a problem that says what to do.
            let early = try await client.execute(uri: "/v1/auth/login", method: .post, body: json(["email": "ada@example.com", "password": "correct horse"]))
            #expect(early.status == .forbidden)
            #expect(object(early.body)["type"] as? String == "/problems/email-unverified")

            // The link in the mail proves the address and starts a session; it works once.
            let link = try #require(try await mailedToken(to: "Ada@Example.com", prefix: "tly_verify_"))
            let verified = try await call(client, "/v1/auth/verify-email", .post, nil, ["token": link])
            #expect(verified.status == .ok)
            let created = object(verified.body)
            let token = try #require(created["token"] as? String)
            #expect(token.hasPrefix("tly_sess_"))
            #expect((created["user"] as? [String: Any])?["email"] as? String == "Ada@Example.com")
            #expect(!String(buffer: verified.body).contains("password"))
            #expect(try await call(client, "/v1/auth/verify-email", .post, nil, ["token": link]).status == .badRequest)

            // Signing up again with the address (compared case-insensitively): the same answer, no second
            // account, the password unchanged, and its owner told by mail.
            let duplicate = try await client.execute(uri: "/v1/auth/signup", method: .post, body: json(["email": "ada@example.COM", "password": "another one"]))
            #expect(duplicate.status == .accepted)
            #expect(String(buffer: duplicate.body) == String(buffer: signup.body))
            #expect(try await scalar(db, "SELECT count(*) FROM users") == 1)
            var told = false
            for _ in 0..<100 where !told {
                told = mailsWritten().contains { $0.contains("To: <Ada@Example.com>") && $0.contains("Subject: Someone tried to sign up") }
                if !told { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(told, "the owner of the address hears of the attempt")
            #expect(try await call(client, "/v1/auth/login", .post, nil, ["email": "ada@example.com", "password": "another one"]).status == .unauthorized)

            let login = try await client.execute(uri: "/v1/auth/login", method: .post, body: json(["email": "ADA@example.com", "password": "correct horse"]))
            #expect(login.status == .ok)
            let second = try #require(object(login.body)["token"] as? String)
            #expect(second != token)

            // Wrong password and unknown email: the same answer.
            let wrong = try await client.execute(uri: "/v1/auth/login", method: .post, body: json(["email": "ada@example.com", "password": "wrong horse"]))
            let unknown = try await client.execute(uri: "/v1/auth/login", method: .post, body: json(["email": "nobody@example.com", "password": "wrong horse"]))
            #expect(wrong.status == .unauthorized)
            #expect(unknown.status == .unauthorized)
            #expect(String(buffer: wrong.body) == String(buffer: unknown.body))

            let me = try await client.execute(uri: "/v1/me", method: .get, headers: [.authorization: "Bearer \(token)"])
            #expect(me.status == .ok)
            #expect(((object(me.body)["user"] as? [String: Any])?["name"] as? String) == "Ada")
            // The scheme is case-insensitive and spaces around the token do not count; anything else is a 401.
            for header in ["bearer \(token)", "BEARER   \(token) ", "Bearer\t\(token)"] {
                let status = try await client.execute(uri: "/v1/me", method: .get, headers: [.authorization: header]).status
                #expect(status == (header.hasPrefix("Bearer\t") ? .unauthorized : .ok), "\(header.debugDescription) → \(status)")
            }
            for header in ["Bearer", "Bearer ", "Bearer    ", "Basic \(token)", "Bearerx \(token)", token] {
                #expect(try await client.execute(uri: "/v1/me", method: .get, headers: [.authorization: header]).status == .unauthorized, "\(header.debugDescription)")
            }

            let logout = try await client.execute(uri: "/v1/auth/logout", method: .post, headers: [.authorization: "Bearer \(token)"])
            #expect(logout.status == .noContent)
            let after = try await client.execute(uri: "/v1/me", method: .get, headers: [.authorization: "Bearer \(token)"])
            #expect(after.status == .unauthorized)
            let stillIn = try await client.execute(uri: "/v1/me", method: .get, headers: [.authorization: "Bearer \(second)"])
            #expect(stillIn.status == .ok, "logging out one session leaves the others")
            let noToken = try await client.execute(uri: "/v1/me", method: .get)
            #expect(noToken.status == .unauthorized)
        }
    }

    /// bcrypt reads 72 bytes: a longer password must still count in full, not be cut.
    @Test func aLongPasswordCountsInFull() async throws {
        try await withTallyServer { client in
            let password = String(repeating: "ä", count: 60) + "-the-end"   // 128 bytes, 68 characters
            let signup = try await client.execute(uri: "/v1/auth/signup", method: .post, body: json(["email": "long@example.com", "password": password]))
            #expect(signup.status == .accepted)
            let link = try #require(try await mailedToken(to: "long@example.com", prefix: "tly_verify_"))
            #expect(try await call(client, "/v1/auth/verify-email", .post, nil, ["token": link]).status == .ok)
            let right = try await client.execute(uri: "/v1/auth/login", method: .post, body: json(["email": "long@example.com", "password": password]))
            #expect(right.status == .ok)
            // The same first 72 bytes with another ending is another password.
            let other = String(repeating: "ä", count: 60) + "-another"
            let wrong = try await client.execute(uri: "/v1/auth/login", method: .post, body: json(["email": "long@example.com", "password": other]))
            #expect(wrong.status == .unauthorized)
        }
    }

    /// Someone who signs up first with an address they do not own gets nowhere: each mailed link carries the
    /// password chosen with its own sign-up, following one kills the others, and nobody has a session before.
    @Test func aSignupForSomeoneElsesAddressCannotTakeItOver() async throws {
        try await withTallyServer { client, db in
            #expect(try await call(client, "/v1/auth/signup", .post, nil, ["email": "cfo@victim.example", "password": "impostor's pass"]).status == .accepted)
            let first = try #require(try await mailedToken(to: "cfo@victim.example", prefix: "tly_verify_"))
            #expect(try await call(client, "/v1/auth/login", .post, nil, ["email": "cfo@victim.example", "password": "impostor's pass"]).status == .forbidden)
            #expect(try await call(client, "/v1/auth/signup", .post, nil, ["email": "CFO@victim.example", "password": "the real one's"]).status == .accepted)
            var second = first
            for _ in 0..<100 where second == first {
                second = try #require(try await mailedToken(to: "cfo@victim.example", prefix: "tly_verify_"))
                if second == first { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(second != first)
            #expect(try await scalar(db, "SELECT count(*) FROM users") == 1)

            // The owner of the mailbox follows the link of their own sign-up.
            #expect(try await call(client, "/v1/auth/verify-email", .post, nil, ["token": second]).status == .ok)
            #expect(try await call(client, "/v1/auth/verify-email", .post, nil, ["token": first]).status == .badRequest, "the other link died")
            #expect(try await call(client, "/v1/auth/login", .post, nil, ["email": "cfo@victim.example", "password": "impostor's pass"]).status == .unauthorized)
            #expect(try await call(client, "/v1/auth/login", .post, nil, ["email": "cfo@victim.example", "password": "the real one's"]).status == .ok)
            // A made-up token with a right checksum is refused without a lookup that could succeed.
            #expect(try await call(client, "/v1/auth/verify-email", .post, nil, ["token": Token.make(prefix: "tly_verify_")]).status == .badRequest)
            #expect(try await call(client, "/v1/auth/verify-email", .post, nil, ["token": "tly_verify_nonsense"]).status == .badRequest)
        }
    }

    /// The database keeps an unverified user out of what needs a proven address: a team, site admin, a session.
    @Test func anUnverifiedUserIsNeverAMemberAnAdminOrLoggedIn() async throws {
        try await withTallyServer { client, db in
            let owner = try await signup(client, "owner@example.com")
            let team = try await newTeam(client, owner, "Core")
            #expect(try await call(client, "/v1/auth/signup", .post, nil, ["email": "eve@example.com", "password": "password123"]).status == .accepted)
            let eve = try await scalarText(db, "SELECT id::text FROM users WHERE email = 'eve@example.com'")
            try await withSingleConnection(db) { connection in
                await #expect { try await connection.execute("UPDATE users SET is_admin = true WHERE email = 'eve@example.com'") } throws: {
                    String(reflecting: $0).contains("users_admin_verified")
                }
                await #expect {
                    try await connection.execute(PostgresQuery(unsafeSQL: "INSERT INTO team_members (team_id, user_id, role) VALUES ('\(team)', '\(eve)', 'admin')"))
                } throws: { String(reflecting: $0).contains("only users who have verified their email join teams") }
                // A session written by hand is worth nothing while the address is unproven.
                try await connection.execute(PostgresQuery(unsafeSQL: """
                    INSERT INTO sessions (user_id, token_hash, expires_at) VALUES ('\(eve)', '\(Auth.tokenHash("tly_sess_handmade"))', now() + interval '1 day')
                    """))
            }
            #expect(try await call(client, "/v1/me", .get, "tly_sess_handmade").status == .unauthorized)
            // Invited, the address gets the same answer as any; only a verified user with it can accept.
            #expect(try await call(client, "/v1/teams/\(team)/invitations", .post, owner.token, ["email": "eve@example.com"]).status == .created)
            #expect(try await scalar(db, "SELECT count(*) FROM team_members") == 1)
        }
    }

    /// Names are checked as the API document states: not all white space, at most 200 characters.
    @Test func blankNamesAreRefusedAndNamesAreTrimmed() async throws {
        try await withTallyServer { client in
            let ada = try await signup(client, "ada@example.com")
            for blank in ["", "   ", "\u{2003}\t"] {
                let team = try await call(client, "/v1/teams", .post, ada.token, ["name": blank])
                #expect(team.status == .badRequest, "\(blank.debugDescription)")
                let key = try await call(client, "/v1/api-keys", .post, ada.token, ["name": blank])
                #expect(key.status == .badRequest, "\(blank.debugDescription)")
            }
            let long = try await call(client, "/v1/teams", .post, ada.token, ["name": String(repeating: "n", count: 201)])
            #expect(long.status == .badRequest)
            let trimmed = try await call(client, "/v1/teams", .post, ada.token, ["name": "  Research  "])
            #expect(trimmed.status == .created)
            #expect((object(trimmed.body)["team"] as? [String: Any])?["name"] as? String == "Research")
        }
    }

    @Test func badInputIsA4xxProblemNeverA5xx() async throws {
        try await withTallyServer { client in
            let cases: [(ByteBuffer, HTTPResponse.Status, String)] = [
                (ByteBuffer(string: "{not json"), .badRequest, "/problems/invalid-json"),
                (ByteBuffer(string: "[1, 2]"), .badRequest, "/problems/invalid-json"),
                (json(["email": "a@example.com", "password": "longenough", "admin": true]), .badRequest, "/problems/unknown-field"),
                (json(["email": 42, "password": "longenough"]), .badRequest, "/problems/wrong-type"),
                (json(["password": "longenough"]), .badRequest, "/problems/missing-field"),
                (json(["email": "not-an-email", "password": "longenough"]), .badRequest, "/problems/invalid-input"),
                (json(["email": "a@example.com", "password": "short"]), .badRequest, "/problems/invalid-input"),
                (json(["email": "a@example.com", "password": String(repeating: "x", count: 257)]), .badRequest, "/problems/invalid-input"),
                (json(["email": " a@example.com", "password": "longenough"]), .badRequest, "/problems/invalid-input"),
                (json(["email": "a@example.com", "password": "longenough", "name": "\u{0}"]), .badRequest, "/problems/invalid-json"),
                (ByteBuffer(string: "{\"email\": \"" + String(repeating: "a", count: 1 << 20) + "\"}"), .contentTooLarge, "/problems/body-too-large"),
                // PostgreSQL text cannot hold NUL: refused before it reaches the database (found by schemathesis).
                (ByteBuffer(string: #"{"email": "a\u0000@example.com", "password": "longenough"}"#), .badRequest, "/problems/invalid-json"),
            ]
            for (body, status, type) in cases {
                let response = try await client.execute(uri: "/v1/auth/signup", method: .post, body: body)
                #expect(response.status == status, "\(type)")
                #expect(response.headers[.contentType] == "application/problem+json", "\(type)")
                #expect(object(response.body)["type"] as? String == type)
            }
            let login = try await client.execute(
                uri: "/v1/auth/login", method: .post, body: ByteBuffer(string: #"{"email": "\u0000", "password": "x"}"#))
            #expect(login.status == .badRequest)
        }
    }

    /// Whether an email has an account does not show in how long a wrong login takes: an unknown email costs
    /// the same bcrypt work as a known one (before, a stand-in hash of cost 4 against real ones of cost 12
    /// answered about 250 times sooner). Cost 10 here, so the work dominates the request.
    @Test func anUnknownEmailTakesAsLongAsAWrongPassword() async throws {
        // Each try from an address of its own (through a trusted proxy), so login throttling stays out of it.
        try await withTallyServer(configure: { $0.bcryptCost = 10; $0.trustedProxies = [AddressRange("127.0.0.1")!] }) { client, _ in
            _ = try await signup(client, "known@example.com")
            func attempt(_ email: String, from address: String) async throws -> Double {
                let started = ContinuousClock.now
                let answer = try await ThrottleTests.login(client, email, "wrong password", from: address)
                #expect(answer.status == .unauthorized)
                return seconds(ContinuousClock.now - started)
            }
            _ = try await attempt("warm@example.com", from: "192.0.2.1")
            var known: [Double] = []
            var unknown: [Double] = []
            var hashes: [Double] = []
            // Alternating, with one cost-10 hash here each round, so all three see the same machine (other
            // tests run beside this one).
            for n in 0..<20 {
                known.append(try await attempt("known@example.com", from: "198.51.100.\(n)"))
                unknown.append(try await attempt("nobody\(n)@example.com", from: "203.0.113.\(n)"))
                let started = ContinuousClock.now
                _ = Bcrypt.hash("a password", cost: 10)
                hashes.append(seconds(ContinuousClock.now - started))
            }
            func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
            let (k, u, oneHash) = (median(known), median(unknown), median(hashes))
            #expect(k >= oneHash / 2 && u >= oneHash / 2, "both pay for a cost-10 bcrypt (\(oneHash) s): known \(k) s, unknown \(u) s")
            #expect(abs(k - u) <= 0.25 * max(k, u), "medians within 25%: known \(k) s, unknown \(u) s")
        }
    }
}
