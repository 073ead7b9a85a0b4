import Foundation
import Hummingbird
import HummingbirdTesting
import PostgresNIO
import TallyCredits
import TallyPostgres
import Testing
@testable import TallyServer

/// A key acts for its creator and the creator's current access; replays need the credential that stored
/// them, valid now; no secret is kept in the database.
@Suite struct KeyAccessTests {
    func consume(_ client: some TestClientProtocol, _ key: String, _ amount: Int, idempotencyKey: String? = nil) async throws -> TestResponse {
        var headers: HTTPFields = [.authorization: "Bearer \(key)"]
        if let idempotencyKey { headers[.idempotencyKey] = idempotencyKey }
        return try await client.execute(uri: "/v1/credits/consume", method: .post, headers: headers, body: json(["amount": amount]))
    }

    /// A team owned by `owner` with `member` in it as `role`, funded with `credits`.
    func team(_ client: some TestClientProtocol, owner: Member, admin: Member, member: Member, role: String, credits: Int) async throws -> String {
        let created = try await call(client, "/v1/teams", .post, owner.token, ["name": "Core"])
        let team = try #require((object(created.body)["team"] as? [String: Any])?["id"] as? String)
        try await addMember(client, team: team, by: owner, member, role: role)
        try await grant(client, admin, team: team, credits)
        return team
    }

    @Test func aRemovedMembersTeamKeysStopAtOnceAndSayWhy() async throws {
        try await withTallyServer { client, db in
            let admin = try await makeAdmin(client, db)
            let owner = try await signup(client, "owner@example.com")
            let carol = try await signup(client, "carol@example.com")
            let team = try await team(client, owner: owner, admin: admin, member: carol, role: "admin", credits: 100)
            let key = try await newKey(client, carol, ["name": "carol's team key", "team_id": team])
            #expect(try await consume(client, key, 5).status == .ok)

            // The owner sees every key that spends from the team, with who created it.
            let listed = object(try await call(client, "/v1/api-keys", .get, owner.token).body)["api_keys"] as? [[String: Any]] ?? []
            #expect(listed.count == 1)
            #expect(listed.first?["created_by"] as? String == carol.id)
            #expect(listed.first?["team_id"] as? String == team)

            // Reads with the key: the server now knows it from its cache.
            #expect(try await call(client, "/v1/credits/balance", .get, key).status == .ok)
            #expect(try await call(client, "/v1/credits/transactions", .get, key).status == .ok)

            #expect(try await call(client, "/v1/teams/\(team)/members/\(carol.id)", .delete, owner.token).status == .noContent)
            // Every route refuses the key at once, the reads first (a cached key is checked in their statement).
            #expect(try await call(client, "/v1/credits/transactions", .get, key).status == .unauthorized)
            #expect(try await call(client, "/v1/credits/balance", .get, key).status == .unauthorized)
            #expect(try await consume(client, key, 5).status == .unauthorized)
            #expect(try await call(client, "/v1/credits/holds", .post, key, ["amount": 1]).status == .unauthorized)
            #expect(try await scalar(db, "SELECT count(*) FROM credit_transactions WHERE kind = 'consume'") == 1)

            let after = object(try await call(client, "/v1/api-keys", .get, owner.token).body)["api_keys"] as? [[String: Any]] ?? []
            #expect(after.first?["revoked_at"] is String)
            let reason = try #require(after.first?["revoked_reason"] as? String)
            #expect(reason.contains("removed from the team"), "\(reason)")
        }
    }

    @Test func ownersAndAdminsListAndRevokeEveryTeamKey() async throws {
        try await withTallyServer { client, db in
            let admin = try await makeAdmin(client, db)
            let owner = try await signup(client, "owner@example.com")
            let dana = try await signup(client, "dana@example.com")
            let erin = try await signup(client, "erin@example.com")
            let team = try await team(client, owner: owner, admin: admin, member: dana, role: "admin", credits: 100)
            try await addMember(client, team: team, by: owner, erin)

            let ownersKey = try await newKey(client, owner, ["name": "owner's", "team_id": team])
            let danasKey = try await newKey(client, dana, ["name": "dana's", "team_id": team])
            _ = ownersKey
            let keys = object(try await call(client, "/v1/api-keys", .get, dana.token).body)["api_keys"] as? [[String: Any]] ?? []
            #expect(Set(keys.compactMap { $0["name"] as? String }) == ["owner's", "dana's"], "an admin sees the team's keys")
            let memberKeys = object(try await call(client, "/v1/api-keys", .get, erin.token).body)["api_keys"] as? [[String: Any]] ?? []
            #expect(memberKeys.isEmpty, "a plain member does not")

            // The owner revokes the admin's key; a member cannot revoke either.
            let danasID = try #require(keys.first { $0["name"] as? String == "dana's" }?["id"] as? String)
            #expect(try await call(client, "/v1/api-keys/\(danasID)", .delete, erin.token).status == .notFound)
            #expect(try await call(client, "/v1/api-keys/\(danasID)", .delete, owner.token).status == .noContent)
            #expect(try await consume(client, danasKey, 1).status == .unauthorized)

            // An admin cannot remove an owner; an owner can remove an admin.
            #expect(try await call(client, "/v1/teams/\(team)/members/\(owner.id)", .delete, dana.token).status == .forbidden)
            #expect(try await call(client, "/v1/teams/\(team)/members/\(dana.id)", .delete, owner.token).status == .noContent)
        }
    }

    @Test func aReplayNeedsTheCredentialThatStoredItValidNow() async throws {
        try await withTallyServer { client, db in
            let (_, user, key) = try await fundedUser(client, db, credits: 100)
            #expect(try await consume(client, key, 5, idempotencyKey: "rv-1").status == .ok)
            let keyID = try #require((object(try await call(client, "/v1/api-keys", .get, user.token).body)["api_keys"] as? [[String: Any]])?.first?["id"] as? String)
            #expect(try await call(client, "/v1/api-keys/\(keyID)", .delete, user.token).status == .noContent)
            let replay = try await consume(client, key, 5, idempotencyKey: "rv-1")
            #expect(replay.status == .unauthorized)
            #expect(replay.headers[.idempotentReplayed] == nil)

            // A session that made a key, then logged out: the retry is refused, and never shows the key.
            let session = try await signup(client, "sam@example.com")
            let made = try await client.execute(
                uri: "/v1/api-keys", method: .post, headers: [.authorization: "Bearer \(session.token)", .idempotencyKey: "mk-1"], body: json(["name": "k"]))
            #expect(made.status == .created)
            #expect(try await call(client, "/v1/auth/logout", .post, session.token).status == .noContent)
            let again = try await client.execute(
                uri: "/v1/api-keys", method: .post, headers: [.authorization: "Bearer \(session.token)", .idempotencyKey: "mk-1"], body: json(["name": "k"]))
            #expect(again.status == .unauthorized)
            #expect(!String(buffer: again.body).contains("tly_"))
        }
    }

    @Test func aRetriedKeyCreationAnswersWithoutTheKey() async throws {
        try await withTallyServer { client, _ in
            let user = try await signup(client, "ada@example.com")
            let headers: HTTPFields = [.authorization: "Bearer \(user.token)", .idempotencyKey: "mk-2"]
            let first = try await client.execute(uri: "/v1/api-keys", method: .post, headers: headers, body: json(["name": "search"]))
            #expect(first.status == .created)
            let key = try #require(object(first.body)["key"] as? String)
            let retry = try await client.execute(uri: "/v1/api-keys", method: .post, headers: headers, body: json(["name": "search"]))
            #expect(retry.status == .created)
            #expect(retry.headers[.idempotentReplayed] == "true")
            let body = object(retry.body)
            #expect(body["key"] == nil)
            #expect((body["key_shown_once"] as? String)?.contains("revoke") == true)
            #expect((body["api_key"] as? [String: Any])?["id"] as? String == (object(first.body)["api_key"] as? [String: Any])?["id"] as? String)
            #expect(!String(buffer: retry.body).contains(key))
        }
    }

    @Test func anAPIKeyCannotAskForAnotherAccount() async throws {
        try await withTallyServer { client, db in
            let (_, _, key) = try await fundedUser(client, db, credits: 10)
            let balance = try await call(client, "/v1/credits/balance?team_id=\(UUID())", .get, key)
            #expect(balance.status == .badRequest)
            #expect((object(balance.body)["detail"] as? String)?.contains("team_id") == true)
            #expect(try await call(client, "/v1/credits/transactions?team_id=x", .get, key).status == .badRequest)
            #expect(try await call(client, "/v1/credits/balance", .get, key).status == .ok)
        }
    }

    /// After a walkthrough that issues sessions and keys every way the API can (with and without
    /// Idempotency-Key, logins with a Bearer), no table holds any of them in plaintext.
    @Test func noSecretIsStoredInAnyTable() async throws {
        try await withTallyServer { client, db in
            let (admin, user, key) = try await fundedUser(client, db, credits: 100)
            var secrets = [admin.token, user.token, key]
            for n in 0..<3 {
                let made = try await client.execute(
                    uri: "/v1/api-keys", method: .post, headers: [.authorization: "Bearer \(user.token)", .idempotencyKey: "make-\(n)"],
                    body: json(["name": "k\(n)"]))
                secrets.append(try #require(object(made.body)["key"] as? String))
            }
            let login = try await client.execute(
                uri: "/v1/auth/login", method: .post, headers: [.authorization: "Bearer \(key)", .idempotencyKey: "auth-login"],
                body: json(["email": "user@example.com", "password": "password123"]))
            secrets.append(try #require(object(login.body)["token"] as? String, "login: \(String(buffer: login.body))"))
            // Sign-up through the API: the mailed link and the session it starts.
            #expect(try await call(client, "/v1/auth/signup", .post, nil, ["email": "new@example.com", "password": "password123"]).status == .accepted)
            let link = try #require(try await mailedToken(to: "new@example.com", prefix: Auth.verificationTokenPrefix))
            let verified = try await client.execute(
                uri: "/v1/auth/verify-email", method: .post, headers: [.idempotencyKey: "auth-verify"], body: json(["token": link]))
            secrets += [link, try #require(object(verified.body)["token"] as? String, "verify: \(String(buffer: verified.body))")]
            // A mail's body (its link) stays only until it is delivered.
            for _ in 0..<100 where try await scalar(db, "SELECT count(*) FROM outbox WHERE delivered_at IS NULL") > 0 {
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(try await consume(client, key, 1, idempotencyKey: "spend-1").status == .ok)

            let dump = try await everyRowAsText(db)
            #expect(dump.contains("user@example.com"), "the dump covers the tables")
            for secret in secrets {
                #expect(!dump.contains(secret), "a secret is stored: \(secret.prefix(12))…")
                #expect(!dump.contains(String(secret.dropFirst(4))), "a secret's random part is stored")
            }
        }
    }

    /// Keys and session tokens carry a checksum a secret scanner verifies offline; checked here by Python's
    /// zlib, not by Tally's own code. A mistyped key is refused; a key of the older shape still works.
    @Test func secretsCarryAChecksumAScannerCanVerify() async throws {
        try await withTallyServer { client, db in
            let (_, user, key) = try await fundedUser(client, db, credits: 10)
            let verifier = """
                import re, sys, zlib
                A = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                def b62(n):
                    s = ""
                    for _ in range(6):
                        s = A[n % 62] + s
                        n //= 62
                    return s
                for token in sys.argv[1:]:
                    m = re.fullmatch(r"(tly_sess_|tly_)([0-9A-Za-z]{43})([0-9A-Za-z]{6})", token)
                    ok = m is not None and b62(zlib.crc32((m.group(1) + m.group(2)).encode())) == m.group(3)
                    print("valid" if ok else "invalid")
                """
            let output = FileManager.default.temporaryDirectory.appendingPathComponent("tally-checksum-\(UUID().uuidString).txt").path
            defer { try? FileManager.default.removeItem(atPath: output) }
            let mistyped = String(key.dropLast()) + (key.last == "A" ? "B" : "A")
            let child = try Command.spawn("/usr/bin/python3", ["-c", verifier, key, user.token, mistyped], stdout: output)
            #expect(await child.waitAsync(pollEvery: .milliseconds(50)) == 0)
            let verdicts = ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
            #expect(verdicts == ["valid", "valid", "invalid"], "zlib's verdicts on key, session token, mistyped key")
            #expect(key.count == 53 && user.token.count == 58)

            let refused = try await call(client, "/v1/credits/balance", .get, mistyped)
            #expect(refused.status == .unauthorized)
            #expect((object(refused.body)["detail"] as? String)?.contains("checksum") == true)
            let badSession = String(user.token.dropLast()) + (user.token.last == "A" ? "B" : "A")
            #expect(try await call(client, "/v1/me", .get, badSession).status == .unauthorized)

            // A key of the older shape (tly_ + 64 hex digits, no checksum) is still accepted.
            let legacy = "tly_" + randomHex(bytes: 32)
            let userID = try #require(UUID(uuidString: user.id))
            try await withSingleConnection(db) {
                try await $0.execute(
                    "INSERT INTO api_keys (user_id, name, prefix, key_hash) VALUES (\(userID), 'legacy', \(String(legacy.prefix(12))), \(Auth.tokenHash(legacy)))")
            }
            #expect(try await call(client, "/v1/credits/consume", .post, legacy, ["amount": 1]).status == .ok)
        }
    }
}
