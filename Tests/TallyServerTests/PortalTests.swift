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

/// The portal as a browser surface, over HTTP: every form refuses a post without its CSRF token, every page has the
/// content security policy and no inline script, the session cookie's attributes, the login's throttle, and a
/// person's pages closed to another.
@Suite struct PortalTests {
    /// The portal's routes, from the router itself, so a new form or page is covered without being listed here.
    static func portalRoutes() -> [(method: String, path: String)] {
        let client = PostgresClient(configuration: .init(host: "127.0.0.1", username: "nobody", password: nil, database: nil, tls: .disable))
        let router = buildRouter(client: client, auth: Auth(client: client))
        return router.routes.map { (method: $0.method.rawValue, path: "\($0.path)") }.filter { PortalController.isPortalPath($0.path) }
    }

    /// `path` with its parameters filled: ids that name nothing (a form's token is checked before anything else).
    static func filled(_ path: String) -> String {
        path.split(separator: "/", omittingEmptySubsequences: false).map { part in
            guard part.hasPrefix(":") || part.hasPrefix("{") else { return String(part) }
            return part.contains("delivery") ? "1" : part.contains("file") ? "portal.css" : UUID().uuidString.lowercased()
        }.joined(separator: "/")
    }

    func get(_ client: some TestClientProtocol, _ path: String, cookie: String? = nil) async throws -> TestResponse {
        var headers: HTTPFields = [:]
        if let cookie { headers[.cookie] = cookie }
        return try await client.execute(uri: path, method: .get, headers: headers)
    }

    func post(_ client: some TestClientProtocol, _ path: String, cookie: String?, form: String) async throws -> TestResponse {
        var headers: HTTPFields = [.contentType: "application/x-www-form-urlencoded"]
        if let cookie { headers[.cookie] = cookie }
        return try await client.execute(uri: path, method: .post, headers: headers, body: ByteBuffer(string: form))
    }

    static func csrf(in body: ByteBuffer) -> String? {
        let html = String(buffer: body)
        guard let range = html.range(of: #"name="csrf" value="[^"]*""#, options: .regularExpression) else { return nil }
        return String(html[range].dropFirst(#"name="csrf" value=""#.count).dropLast())
    }

    @Test func everyFormRefusesAPostWithoutItsTokenAndEveryPageHasThePolicy() async throws {
        try await withTallyServer { client, db in
            let user = try await signup(client, "ada@example.com")
            let cookie = "\(PortalSecurity.sessionCookie)=\(user.token)"
            let routes = Self.portalRoutes()
            let posts = routes.filter { $0.method == "POST" }
            let gets = routes.filter { $0.method == "GET" }
            #expect(posts.count >= 13 && gets.count >= 15, "\(routes)")

            // Without a token, and with a wrong one: 403, and nothing done (the session still works, no key made).
            for route in posts {
                let path = Self.filled(route.path)
                for form in ["name=x&email=ada%40example.com&password=password123", "csrf=not-the-token&name=x&email=ada%40example.com&password=password123"] {
                    let answer = try await post(client, path, cookie: cookie, form: form)
                    #expect(answer.status == .forbidden, "POST \(route.path) with \(form.prefix(20)): \(answer.status)")
                    #expect(answer.headers[.contentSecurityPolicy] == PortalSecurity.contentSecurityPolicy)
                }
            }
            #expect(try await get(client, "/portal", cookie: cookie).status == .ok, "the refused posts did not sign anyone out")
            #expect(try await scalarText(db, "SELECT count(*)::text FROM api_keys") == "0")
            #expect(try await scalarText(db, "SELECT count(*)::text FROM teams") == "0")

            // With the session's token a form works: the same post makes a key.
            let keysPage = try await get(client, "/portal/keys", cookie: cookie)
            let token = try #require(Self.csrf(in: keysPage.body))
            #expect(token != user.token && !String(buffer: keysPage.body).contains(user.token), "the page never carries the session itself")
            let made = try await post(client, "/portal/keys", cookie: cookie, form: "csrf=\(token)&name=k&team_id=&credit_limit=")
            #expect(made.status == .seeOther && made.headers[.location]?.hasPrefix("/portal/keys") == true, "\(made.status)")
            #expect(try await scalarText(db, "SELECT count(*)::text FROM api_keys") == "1")
            // Another session's token is not this one's.
            let other = try await signup(client, "grace@example.com")
            let otherToken = try #require(Self.csrf(in: try await get(client, "/portal/keys", cookie: "\(PortalSecurity.sessionCookie)=\(other.token)").body))
            #expect(try await post(client, "/portal/keys", cookie: cookie, form: "csrf=\(otherToken)&name=k2").status == .forbidden)

            // Every page, signed in and out: the policy, no framing, never cached, no inline script or handler.
            for route in gets {
                for signedIn in [true, false] {
                    let answer = try await get(client, Self.filled(route.path), cookie: signedIn ? cookie : nil)
                    let where_ = "GET \(route.path) \(signedIn ? "signed in" : "signed out") → \(answer.status)"
                    #expect(answer.headers[.contentSecurityPolicy] == PortalSecurity.contentSecurityPolicy, "\(where_)")
                    #expect(answer.headers[HTTPField.Name("X-Frame-Options")!] == "DENY" && answer.headers[.cacheControl] == "no-store", "\(where_)")
                    #expect(answer.status != .internalServerError, "\(where_): \(String(buffer: answer.body).prefix(300))")
                    let html = String(buffer: answer.body)
                    #expect(html.range(of: #"<script(?![^>]*\ssrc=)[^>]*>"#, options: .regularExpression) == nil, "\(where_): an inline script")
                    #expect(html.range(of: #"\son[a-z]+\s*="#, options: .regularExpression) == nil, "\(where_): an inline event handler")
                    #expect(html.range(of: #"\sstyle\s*="#, options: .regularExpression) == nil, "\(where_): an inline style")
                    if !signedIn && ![.ok, .notFound].contains(answer.status) && route.path != "/portal/assets/{file}" {
                        #expect(answer.status == .seeOther && answer.headers[.location] == "/portal/login", "\(where_) sends to sign-in")
                    }
                }
            }
            let css = try await get(client, "/portal/assets/portal.css")
            #expect(css.status == .ok && css.headers[.contentType] == "text/css; charset=utf-8")
            #expect(try await get(client, "/portal/assets/..%2F..%2FPackage.swift").status == .notFound)
        }
    }

    @Test func theSessionCookieIsHttpOnlyLaxAndSecureOverHTTPSAndTheLoginIsThrottledAsTheAPIs() async throws {
        try await withTallyServer(configure: { $0.publicURL = "https://credits.example.com" }) { client, _ in
            _ = try await signup(client, "ada@example.com")
            let page = try await get(client, "/portal/login")
            let form = try #require(page.headers[values: .setCookie].first { $0.hasPrefix(PortalSecurity.formCookie + "=") })
            let formValue = String(form.dropFirst(PortalSecurity.formCookie.count + 1).prefix { $0 != ";" })
            let token = try #require(Self.csrf(in: page.body))
            #expect(token == formValue, "the form repeats its cookie")
            let signedIn = try await post(client, "/portal/login", cookie: "\(PortalSecurity.formCookie)=\(formValue)", form: "csrf=\(token)&email=ada%40example.com&password=password123")
            #expect(signedIn.status == .seeOther && signedIn.headers[.location] == "/portal")
            let session = try #require(signedIn.headers[values: .setCookie].first { $0.hasPrefix(PortalSecurity.sessionCookie + "=tly_sess_") }, "\(signedIn.headers)")
            let attributes = Set(session.split(separator: ";").dropFirst().map { $0.trimmingCharacters(in: .whitespaces) })
            #expect(attributes.isSuperset(of: ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"]), "\(session)")

            // Wrong passwords through the portal count as the API's do: a 429 with Retry-After comes early.
            var statuses: [Int] = []
            for _ in 0..<12 {
                let answer = try await post(client, "/portal/login", cookie: "\(PortalSecurity.formCookie)=\(formValue)", form: "csrf=\(token)&email=ada%40example.com&password=wrong-password")
                statuses.append(Int(answer.status.code))
                if answer.status == .tooManyRequests {
                    #expect(Int(answer.headers[.retryAfter] ?? "") ?? 0 > 0)
                    break
                }
            }
            #expect(Set(statuses).isSubset(of: [401, 429]) && statuses.last == 429 && statuses.count <= 8, "\(statuses)")
            // And the API sees the same count.
            let api = try await client.execute(uri: "/v1/auth/login", method: .post, body: json(["email": "ada@example.com", "password": "password123"]))
            #expect(api.status == .tooManyRequests)
        }
    }

    @Test func anotherPersonSeesNoneOfTheFirstsPages() async throws {
        try await withTallyServer { client, db in
            let owner = try await signup(client, "ada@example.com")
            let team = try await newTeam(client, owner, "Engines")
            let key = try #require(object(try await call(client, "/v1/api-keys", .post, owner.token, ["name": "k", "team_id": team]).body)["api_key"] as? [String: Any])?["id"] as? String
            let other = try await signup(client, "mallory@example.com")
            let cookie = "\(PortalSecurity.sessionCookie)=\(other.token)"
            for path in [
                "/portal/accounts/\(team)", "/portal/teams/\(team)", "/portal/ledger?account=\(team)", "/portal/ledger.csv?account=\(team)",
                "/portal/alerts?account=\(team)", "/portal/keys/\(key ?? "")/revoke",
            ] {
                let answer = try await get(client, path, cookie: cookie)
                #expect([.notFound, .forbidden].contains(answer.status), "\(path): \(answer.status)")
                #expect(!String(buffer: answer.body).contains("Engines"), "\(path) names nothing of the team")
            }
            #expect(try await get(client, "/portal/webhooks", cookie: cookie).status == .forbidden)
            // The owner sees them.
            #expect(try await get(client, "/portal/accounts/\(team)", cookie: "\(PortalSecurity.sessionCookie)=\(owner.token)").status == .ok)
            _ = db
        }
    }

    @Test func theLedgerDownloadsAsCSVThatASpreadsheetCannotRunAsAFormula() async throws {
        #expect(PortalController.csvField("=HYPERLINK(\"x\")") == "\"'=HYPERLINK(\"\"x\"\")\"")
        #expect(PortalController.csvField("-5") == "-5", "a negative amount stays a number")
        #expect(PortalController.csvField("a,b") == "\"a,b\"")
        #expect(PortalController.csvField("@SUM(A1)") == "'@SUM(A1)")
        try await withTallyServer { client, db in
            let (_, user, key) = try await fundedUser(client, db, credits: 100)
            for description in ["first", "=1+1, a formula"] {
                #expect(try await call(client, "/v1/credits/consume", .post, key, ["amount": 3, "description": description]).status == .ok)
            }
            let answer = try await get(client, "/portal/ledger.csv?kind=consume", cookie: "\(PortalSecurity.sessionCookie)=\(user.token)")
            #expect(answer.status == .ok && answer.headers[.contentType] == "text/csv; charset=utf-8")
            #expect(answer.headers[.contentDisposition]?.contains("attachment") == true)
            let lines = String(buffer: answer.body).split(separator: "\r\n")
            #expect(lines.count == 3 && lines[0].hasPrefix("id,created_at,kind,amount"), "\(lines)")
            #expect(lines[1].contains(",consume,-3,94,") && lines[1].hasSuffix("\"'=1+1, a formula\""), "\(lines[1])")
            // The same entries the API lists with the same filter.
            let api = object(try await call(client, "/v1/credits/transactions?kind=consume", .get, user.token).body)["transactions"] as? [[String: Any]] ?? []
            #expect(api.compactMap { $0["id"] as? Int }.map(String.init) == lines.dropFirst().map { String($0.prefix { $0 != "," }) })
        }
    }
}
