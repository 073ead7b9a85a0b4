import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import PostgresNIO
import TallyCredits
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyServer

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#endif

// The helpers every suite of TallyServerTests shares: servers on fresh databases, members, HTTP calls,
// raw connections. They fail the test (`#require`), never the whole run.

func withTallyServer(_ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void) async throws {
    try await withTallyServer { client, _ in try await body(client) }
}

/// The same, with the database's settings for checks behind the API.
func withTallyServer(
    maintenanceInterval: Duration = .seconds(5),
    _ body: @escaping @Sendable (any TestClientProtocol, ConnectionSettings) async throws -> Void
) async throws {
    try await withTallyServer(configure: { $0.maintenanceInterval = maintenanceInterval }, body)
}

func json(_ object: [String: Any]) -> ByteBuffer {
    // Not JSON (a value JSON cannot hold) becomes a body the server refuses, so the test fails, not the run.
    (try? JSONSerialization.data(withJSONObject: object)).map { ByteBuffer(data: $0) } ?? ByteBuffer(string: "not JSON: \(object)")
}

func object(_ buffer: ByteBuffer) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(buffer: buffer))) as? [String: Any] ?? [:]
}

/// A server of the test's own with `configure` applied to its settings, on a fresh database.
func withTallyServer(
    configure: @Sendable (inout ServerSettings) -> Void,
    _ body: @escaping @Sendable (any TestClientProtocol, ConnectionSettings) async throws -> Void
) async throws {
    try await TestDatabase.withFreshDatabase(from: .tally) { db in
        let mailFolder = FileManager.default.temporaryDirectory.appendingPathComponent("tally-mail-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: mailFolder) }
        var settings = ServerSettings(host: "127.0.0.1", port: 0, database: db.asTallyApplication, logLevel: .critical, bcryptCost: 4)
        settings.mail = .files(directory: mailFolder)
        settings.outboxInterval = .milliseconds(100)
        configure(&settings)
        try await ServerUnderTest.$database.withValue(db) {
            try await ServerUnderTest.$mailFolder.withValue(mailFolder) {
                try await ServerUnderTest.$bcryptCost.withValue(settings.bcryptCost) {
                    try await buildApplication(settings).test(.live) { client in try await body(ContractCheckingClient(client: client), db) }
                }
            }
        }
    }
}

/// A plain TCP connection to the server, for what an HTTP client library would not do: send a request a byte
/// at a time, or open a connection and send nothing.
final class RawConnection: Sendable {
    let descriptor: Int32

    /// Connects to the server on 127.0.0.1; `from` another loopback address (127.0.0.2, …) to be another client.
    init(port: Int, from source: String? = nil) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        if let source {
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            local.sin_addr.s_addr = inet_addr(source)
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard bound == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    }

    deinit { close(descriptor) }

    /// Sends `text`; false when the server has closed the connection.
    @discardableResult
    func send(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    /// Everything the server sends until it closes the connection or `limit` passes, and whether it closed.
    func readUntilClosed(limit: Duration) async -> (text: String, closed: Bool) {
        var received: [UInt8] = []
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            switch receive() {
            case .some(let bytes) where !bytes.isEmpty: received += bytes
            case .some: try? await Task.sleep(for: .milliseconds(10))
            case .none: return (String(decoding: received, as: UTF8.self), true)
            }
        }
        return (String(decoding: received, as: UTF8.self), false)
    }

    /// One complete answer (head and `Content-Length` body), or nil when the connection closes or `limit` passes.
    func readResponse(limit: Duration) async -> String? {
        var received: [UInt8] = []
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            let text = String(decoding: received, as: UTF8.self)
            if let end = text.range(of: "\r\n\r\n") {
                let length = text[..<end.lowerBound].split(separator: "\r\n")
                    .first { $0.lowercased().hasPrefix("content-length:") }
                    .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                if text[end.upperBound...].utf8.count >= length { return text }
            }
            switch receive() {
            case .some(let bytes) where !bytes.isEmpty: received += bytes
            case .some: try? await Task.sleep(for: .milliseconds(10))
            case .none: return nil
            }
        }
        return nil
    }

    /// What has arrived, without waiting (empty when nothing has); nil once the server has closed the
    /// connection. Never blocks: the tests share a small thread pool with the server they talk to.
    private func receive() -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if count > 0 { return Array(buffer[0..<count]) }
        if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { return [] }
        return nil
    }
}

func seconds(_ duration: Duration) -> Double { duration.inSeconds }

func scalar(_ db: ConnectionSettings, _ sql: PostgresQuery) async throws -> Int64 {
    try await withPostgresClient(db) { client in
        var value: Int64 = 0
        for try await v in try await client.query(sql).decode(Int64.self) { value = v }
        return value
    }
}

/// The one text value `sql` selects ("" when no row).
func scalarText(_ db: ConnectionSettings, _ sql: PostgresQuery) async throws -> String {
    try await withPostgresClient(db) { client in
        var value = ""
        for try await v in try await client.query(sql).decode(String.self) { value = v }
        return value
    }
}

/// A verified user, logged in: session token, id and email.
struct Member {
    var token: String
    var id: String
    var email: String = ""
}

/// The database of the server a test talks to, for helpers that set up what the API cannot (a verified user
/// without a mailbox to read). Set by `withTallyServer`.
enum ServerUnderTest {
    @TaskLocal static var database: ConnectionSettings?
    /// Where it writes its mail (`.eml` files), unless the test sends mail elsewhere.
    @TaskLocal static var mailFolder: String?
    /// The cost its password hashes have (so a user made by `signup` costs what one signed up through it would).
    @TaskLocal static var bcryptCost: UInt8 = 4
}

/// The newest mail to `email` that the server under test wrote, once one is there holding a token starting
/// with `prefix` (within 10 s); nil when none came.
func mailedToken(to email: String, prefix: String) async throws -> String? {
    _ = try #require(ServerUnderTest.mailFolder, "mailedToken needs withTallyServer around it")
    let deadline = ContinuousClock.now + .seconds(10)
    while true {
        for text in mailsWritten().reversed() where text.lowercased().contains("to: <\(email.lowercased())>") {
            guard let start = text.range(of: prefix) else { continue }
            return String(text[start.lowerBound...].prefix { $0.isLetter || $0.isNumber || $0 == "_" })
        }
        if ContinuousClock.now > deadline { return nil }
        try await Task.sleep(for: .milliseconds(100))
    }
}

/// The mails (whole `.eml` texts) the server under test wrote, oldest first.
func mailsWritten() -> [String] {
    guard let folder = ServerUnderTest.mailFolder else { return [] }
    return ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [])
        .sorted { (Int($0.split(separator: ".")[0]) ?? 0) < (Int($1.split(separator: ".")[0]) ?? 0) }
        .compactMap { try? String(contentsOfFile: folder + "/" + $0, encoding: .utf8) }
}

/// A verified user with password `password123`, made as `tally users create` makes one, then logged in over
/// the API. Sign-up through the API (a mailed link) is what AuthTests and MailTests test.
func signup(_ client: some TestClientProtocol, _ email: String) async throws -> Member {
    let db = try #require(ServerUnderTest.database, "signup(_:_:) needs withTallyServer (or ServerUnderTest.$database) around it")
    _ = try await withPostgresClient(db) { client in
        try await Auth(client: client, bcryptCost: ServerUnderTest.bcryptCost).createUser(email: email, password: "password123", name: nil, admin: false, context: testQueries)
    }
    let response = try await client.execute(uri: "/v1/auth/login", method: .post, body: json(["email": email, "password": "password123"]))
    let session = try decode(SessionAnswer.self, response, "log in \(email)")
    return Member(token: session.token, id: session.user.id, email: email)
}

/// A new team of `owner`'s: its id.
func newTeam(_ client: some TestClientProtocol, _ owner: Member, _ name: String) async throws -> String {
    let created = try await call(client, "/v1/teams", .post, owner.token, ["name": name])
    return try #require((object(created.body)["team"] as? [String: Any])?["id"] as? String, "new team: \(String(buffer: created.body))")
}

/// Every row of every table of `db` as text (stored answers, which are bytea, as text too): to look for what
/// must not be stored.
func everyRowAsText(_ db: ConnectionSettings) async throws -> String {
    try await withPostgresClient(db) { client in
        var tables: [String] = []
        for try await name in try await client.query(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        ).decode(String.self) { tables.append(name) }
        var text = ""
        for table in tables {
            for try await row in try await client.query(PostgresQuery(unsafeSQL: "SELECT t::text FROM \(table) t")).decode(String.self) {
                text += row + "\n"
            }
        }
        for try await row in try await client.query("SELECT convert_from(response_body, 'UTF8') FROM idempotency_keys WHERE response_body IS NOT NULL").decode(String.self) {
            text += row + "\n"
        }
        return text
    }
}

/// `member` joins `team` as users do: invited by `inviter` (an owner or admin) with `role`, then accepting.
func addMember(_ client: some TestClientProtocol, team: String, by inviter: Member, _ member: Member, role: String = "member") async throws {
    let invited = try await call(client, "/v1/teams/\(team)/invitations", .post, inviter.token, ["email": member.email, "role": role])
    let invitation = try #require(object(invited.body)["invitation"] as? [String: Any], "invite: \(invited.status) \(String(buffer: invited.body))")
    let id = try #require(invitation["id"] as? String)
    let accepted = try await call(client, "/v1/invitations/\(id)/accept", .post, member.token)
    #expect(accepted.status == .ok, "accept: \(String(buffer: accepted.body))")
}

/// What the helpers read of a session answer (signup, login) and of a created key.
struct SessionAnswer: Decodable {
    struct User: Decodable { var id: String }
    var token: String
    var user: User
}

struct CreatedKeyAnswer: Decodable { var key: String }

/// The answer's body as `T`; a failure names what was asked and shows the body.
func decode<T: Decodable>(_ type: T.Type, _ response: TestResponse, _ what: String) throws -> T {
    do {
        return try JSONDecoder().decode(T.self, from: Data(buffer: response.body))
    } catch {
        Issue.record("\(what): \(response.status.code) \(String(buffer: response.body).prefix(300))")
        throw error
    }
}

func call(_ client: some TestClientProtocol, _ uri: String, _ method: HTTPRequest.Method, _ token: String?, _ body: [String: Any]? = nil) async throws -> TestResponse {
    var headers: HTTPFields = [:]
    if let token { headers[.authorization] = "Bearer \(token)" }
    return try await client.execute(uri: uri, method: method, headers: headers, body: body.map(json))
}

/// One request over its own HTTP connection (URLSession), for tests that need many at once; the test
/// client is a single connection.
func send(
    port: Int, _ path: String, _ method: String = "POST", token: String?, body: [String: Any]? = nil, headers: [String: String] = [:]
) async throws -> Answer {
    var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
    request.httpMethod = method
    if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
    for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
    if let body { request.httpBody = try JSONSerialization.data(withJSONObject: body) }
    let (data, response) = try await URLSession.shared.data(for: request)
    let http = try #require(response as? HTTPURLResponse)
    var fields: [String: String] = [:]
    for (name, value) in http.allHeaderFields { fields[String(describing: name).lowercased()] = String(describing: value) }
    for violation in Contract.shared.violations(
        method: HTTPRequest.Method(method) ?? .get, uri: path, status: http.statusCode, contentType: fields["content-type"], body: Array(data)
    ) {
        Issue.record("\(method) \(path) → \(http.statusCode): \(violation) (per /openapi.json)")
    }
    for missing in Contract.missingHeaders(uri: path, cacheControl: fields["cache-control"], contentTypeOptions: fields["x-content-type-options"]) {
        Issue.record("\(method) \(path) → \(http.statusCode): \(missing)")
    }
    return Answer(status: http.statusCode, data: data, headers: fields)
}

/// An HTTP answer: status, body, and headers with lower-cased names.
struct Answer: Sendable {
    var status: Int
    var data: Data
    var headers: [String: String]
    var body: [String: Any] { (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:] }
}

/// An admin grant of `amount` to a user (or with `team`, a team).
func grant(_ client: some TestClientProtocol, _ admin: Member, user: String? = nil, team: String? = nil, _ amount: Int, expires: String? = nil) async throws {
    var body: [String: Any] = ["amount": amount, "description": "test grant"]
    if let user { body["user_id"] = user }
    if let team { body["team_id"] = team }
    if let expires { body["expires_at"] = expires }
    let response = try await call(client, "/v1/admin/grants", .post, admin.token, body)
    #expect(response.status == .created, "grant: \(String(buffer: response.body))")
}

/// A new API key of `user`'s, returned in full.
/// A service key made by `admin` (an admin's session) with `scopes`.
func newServiceKey(_ client: some TestClientProtocol, _ admin: Member, name: String = "backend", scopes: [String]) async throws -> String {
    let made = try await call(client, "/v1/service-keys", .post, admin.token, ["name": name, "scopes": scopes])
    return try #require(object(made.body)["key"] as? String, "new service key: \(made.status) \(String(buffer: made.body))")
}

func newKey(_ client: some TestClientProtocol, _ user: Member, _ body: [String: Any] = ["name": "key"]) async throws -> String {
    return try decode(CreatedKeyAnswer.self, try await call(client, "/v1/api-keys", .post, user.token, body), "new key").key
}

/// An admin, a user granted `credits` (expiring at `expires`), and an API key of the user's made with `key`.
func fundedUser(
    _ client: some TestClientProtocol, _ db: ConnectionSettings, credits: Int, expires: String? = nil, key: [String: Any] = ["name": "key"]
) async throws -> (admin: Member, user: Member, key: String) {
    let admin = try await makeAdmin(client, db)
    let user = try await signup(client, "user@example.com")
    try await grant(client, admin, user: user.id, credits, expires: expires)
    return (admin, user, try await newKey(client, user, key))
}

func audit(_ db: ConnectionSettings) async throws -> AuditReport {
    try await withPostgresClient(db) { try await Audit.run($0, logger: testQueries.logger) }
}

func makeAdmin(_ client: some TestClientProtocol, _ db: ConnectionSettings) async throws -> Member {
    let admin = try await signup(client, "admin@example.com")
    try await withSingleConnection(db) { try await $0.execute("UPDATE users SET is_admin = true WHERE email = 'admin@example.com'") }
    return admin
}

/// What the tests' direct calls into the credits store run with.
let testQueries = QueryContext(logger: Logger(label: "tally.tests"))
