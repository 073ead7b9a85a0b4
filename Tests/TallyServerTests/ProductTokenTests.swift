import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import PostgresNIO
import TallyCredits
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyServer

/// `--trust-jwt`: the product's end users call Tally with the product's own session token, minted here by PyJWT
/// (`scripts/mint-product-tokens.py`), its `sub` a user customer's external id; signature, expiry, issuer and
/// audience checked, the algorithm the key's.
@Suite struct ProductTokenTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let python = repository.appendingPathComponent(".build/fuzz-venv/bin/python").path

    func mint(_ folder: String) throws -> [String: String] {
        let log = folder + "/mint.log"
        let child = try Command.spawn(Self.python, [Self.repository.appendingPathComponent("scripts/mint-product-tokens.py").path, folder], stdout: log)
        let status = child.wait()
        try #require(status == 0, "minting tokens (pip install 'pyjwt[crypto]' into .build/fuzz-venv: bash .ci/run): \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        let text = (try? String(contentsOfFile: folder + "/tokens.json", encoding: .utf8)) ?? ""
        return try #require((try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: String], "\(text)")
    }

    /// The customers: cus_ada (a user with 100 credits) and cus_team (her team).
    func customers(_ client: some TestClientProtocol, _ db: ConnectionSettings) async throws {
        let admin = try await makeAdmin(client, db)
        let key = try await newServiceKey(client, admin, scopes: ServiceScope.allCases.map(\.rawValue))
        #expect(try await call(client, "/v1/customers/cus_ada", .put, key, ["kind": "user", "email": "ada@example.com"]).status == .created)
        #expect(try await call(client, "/v1/customers/cus_team", .put, key, ["kind": "team", "name": "Engines", "owner": "cus_ada"]).status == .created)
        #expect(try await call(client, "/v1/customers/cus_ada/grants", .post, key, ["amount": 100, "description": "plan"]).status == .created)
        // Ada is an admin in Tally: a product's token still never carries that.
        try await withSingleConnection(db) { try await $0.execute("UPDATE users SET is_admin = true WHERE external_id = 'cus_ada'") }
    }

    func status(_ client: some TestClientProtocol, _ path: String, _ method: HTTPRequest.Method = .get, _ token: String, _ body: [String: Any]? = nil) async throws -> (Int, String) {
        let answer = try await call(client, path, method, token, body)
        return (Int(answer.status.code), String(buffer: answer.body))
    }

    @Test func aProductsTokenActsForItsUserCustomerAndNothingElsePasses() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tally-jwt-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let tokens = try mint(folder)
        let port = try LocalCluster.freePort()
        let server = try Command.spawn(
            Self.python, ["-m", "http.server", "\(port)", "--bind", "127.0.0.1", "--directory", folder], stdout: folder + "/http.log")
        defer { kill(server.pid, SIGKILL); _ = server.wait() }
        for _ in 0..<100 {
            if (try? Data(contentsOf: URL(string: "http://127.0.0.1:\(port)/jwks.json")!)) != nil { break }
            try await Task.sleep(for: .milliseconds(50))
        }

        var trust = ProductTokenSettings(keys: .jwks(URL(string: "http://127.0.0.1:\(port)/jwks.json")!), issuer: "https://auth.example.com", audience: "tally")
        trust.refetchInterval = 0.5
        let trusted = trust
        try await withTallyServer(configure: { $0.productTokens = trusted }) { client, db in
            try await customers(client, db)
            let token = try #require(tokens["valid"])
            // The customer's own account, as with a session: the balance, and a key the user holds.
            let (balance, body) = try await status(client, "/v1/credits/balance", .get, token)
            #expect(balance == 200 && object(ByteBuffer(string: body))["balance"] as? Int == 100, "\(body)")
            #expect(try await status(client, "/v1/me", .get, token).1.contains("ada@example.com"))
            let (made, key) = try await status(client, "/v1/api-keys", .post, token, ["name": "from the product's login"])
            #expect(made == 201, "\(key)")
            #expect(try await status(client, "/v1/credits/balance?team_id=\(try await scalarText(db, "SELECT id::text FROM teams WHERE external_id = 'cus_team'"))", .get, token).0 == 200,
                    "her team's account too, as a member")
            // Never Tally's admin rights, nor a Tally session to end.
            #expect(try await status(client, "/v1/admin/audit", .get, token).0 == 403)
            #expect(try await status(client, "/v1/admin/grants", .post, token, ["user_id": UUID().uuidString, "amount": 1, "description": "x"]).0 == 401)
            #expect(try await status(client, "/v1/auth/logout", .post, token).0 == 401)
            #expect(try await status(client, "/v1/sessions", .get, token).0 == 401)

            // Everything else is refused, saying why.
            let refusals: [(String, String)] = [
                ("expired", "expired"), ("early", "not valid before"), ("wrong_issuer", "issuer"), ("wrong_audience", "audience"),
                ("no_expiry", "lacks a claim"), ("tampered", "signature"), ("none", "the product's token was refused"),
                ("confused", "the product's token was refused"), ("unknown", "no customer"), ("team", "a team"),
            ]
            for (name, says) in refusals {
                let (code, text) = try await status(client, "/v1/credits/balance", .get, try #require(tokens[name]))
                #expect(code == 401 && text.contains(says), "\(name): \(code) \(text)")
            }
            // A key the product added later: unknown until its JWKS has it, then taken (fetched again, not per token).
            let rotated = try #require(tokens["rotated"])
            #expect(try await status(client, "/v1/credits/balance", .get, rotated).0 == 401)
            try FileManager.default.removeItem(atPath: folder + "/jwks.json")
            try FileManager.default.copyItem(atPath: folder + "/jwks-rotated.json", toPath: folder + "/jwks.json")
            try await Task.sleep(for: .milliseconds(600))
            let (afterRotation, why) = try await status(client, "/v1/credits/balance", .get, rotated)
            #expect(afterRotation == 200, "\(why)")
            #expect(try await status(client, "/v1/credits/balance", .get, token).0 == 200, "the first key still verifies")
            let fetches = ((try? String(contentsOfFile: folder + "/http.log", encoding: .utf8)) ?? "").components(separatedBy: "GET /jwks.json").count - 1
            #expect(fetches >= 2 && fetches <= 4, "the JWKS fetched when a key was missing, not for every token: \(fetches)")
            // Erased, the user's token stops at once (the external id goes with the person).
            let ada = try await scalarText(db, "SELECT id::text FROM users WHERE external_id = 'cus_ada'")
            do {
                try await withPostgresClient(db) { client in
                    _ = try await Ledger(client: client).eraseUser(UUID(uuidString: ada)!, by: .operator("test"), context: testQueries)
                }
            } catch {
                Issue.record("erasing Ada: \(String(reflecting: error))")
            }
            #expect(try await status(client, "/v1/credits/balance", .get, token).0 == 401)
        }

        // A shared secret instead (HS256): only tokens signed with it pass.
        var shared = ProductTokenSettings(keys: .file(folder + "/secret"), issuer: "https://auth.example.com", audience: "tally")
        shared.refetchInterval = 0.5
        let secret = shared
        try await withTallyServer(configure: { $0.productTokens = secret }) { client, db in
            try await customers(client, db)
            #expect(try await status(client, "/v1/credits/balance", .get, try #require(tokens["hs_valid"])).0 == 200)
            #expect(try await status(client, "/v1/credits/balance", .get, try #require(tokens["hs_wrong"])).0 == 401)
            #expect(try await status(client, "/v1/credits/balance", .get, try #require(tokens["valid"])).0 == 401, "an RS256 token when the key is a secret")
        }

        // Without --trust-jwt a JWT is no credential at all.
        try await withTallyServer { client, db in
            try await customers(client, db)
            #expect(try await status(client, "/v1/credits/balance", .get, try #require(tokens["valid"])).0 == 401)
        }
    }
}
