import Foundation
import PostgresNIO
import TallyPostgres
import TallyTestSupport
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Several `tally serve` processes on one database, as a deployment scales out behind a round-robin balancer:
/// what the database decides (balances, key limits, idempotency, holds, mail sent once) holds across them.
@Suite(.serialized, .slot) struct ScaleOutTests {
    struct Answer: Sendable {
        var status: Int
        var body: [String: any Sendable]
        var replayed: Bool
    }

    /// One request to `port`.
    static func send(
        _ port: Int, _ method: String, _ path: String, key: String?, body: String? = nil, idempotencyKey: String? = nil
    ) async throws -> Answer {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        request.httpMethod = method
        if let key { request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization") }
        if let idempotencyKey { request.setValue(idempotencyKey, forHTTPHeaderField: "Idempotency-Key") }
        if let body {
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = Data(body.utf8)
        }
        let (data, response) = try await URLSession(configuration: .ephemeral).data(for: request)
        let http = response as? HTTPURLResponse
        let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        return Answer(
            status: http?.statusCode ?? 0, body: object.mapValues { "\($0)" },
            replayed: http?.value(forHTTPHeaderField: "Idempotent-Replayed") == "true")
    }

    @Test(.freshDatabase(from: .tally)) func threeServersOnOneDatabaseKeepEveryPromise() async throws {
        let db = try TestDatabase.current
        let url = db.url()
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("tally-scale-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }

        #expect(try await TallyProcess.run(["users", "create", "--email", "shop@example.com", "--password", "shop-password-1", "--database-url", url]).status == 0)
        #expect(try await TallyProcess.run(["credits", "grant", "--user", "shop@example.com", "--amount", "1200", "--database-url", url]).status == 0)
        func newKey(_ extra: [String]) async throws -> String {
            let made = try await TallyProcess.run(["keys", "create", "--user", "shop@example.com", "--database-url", url] + extra)
            return try #require(made.stdout.split(separator: "\n").last.map(String.init), Comment(rawValue: made.stderr))
        }
        let limited = try await newKey(["--limit", "300", "--name", "limited"])
        let open = try await newKey(["--name", "open"])

        // Three servers in one working directory, so their mail (files, by default) lands in one folder.
        let mail = work + "/.tally/mail"
        let ports = try (0..<3).map { _ in try LocalCluster.freePort() }
        let servers = try ports.map { port in
            try TallyProcess.launch(["serve", "--port", String(port), "--metrics-port", "0", "--database-url", url], in: work)
        }
        var stopped = false
        func stop() async -> [TallyProcess.Result] {
            stopped = true
            for server in servers { kill(server.pid, SIGINT) }
            var results: [TallyProcess.Result] = []
            for server in servers { results.append(await TallyProcess.collect(server)) }
            return results
        }
        defer { if !stopped { for server in servers { kill(server.pid, SIGKILL) } } }
        for port in ports { #expect(try await getWhenUp("http://127.0.0.1:\(port)/readyz").0 == 200) }
        let spend = #"{"amount": 10}"#

        // One Idempotency-Key sent to all three servers at once, three times each: one spend.
        let once = try await withThrowingTaskGroup(of: Answer.self) { group in
            for index in 0..<9 {
                group.addTask { try await Self.send(ports[index % 3], "POST", "/v1/credits/consume", key: open, body: spend, idempotencyKey: "order-1") }
            }
            var all: [Answer] = []
            for try await answer in group { all.append(answer) }
            return all
        }
        #expect(once.allSatisfy { $0.status == 200 || $0.status == 409 }, "\(once.map(\.status))")
        let spent = once.filter { $0.status == 200 }
        #expect(!spent.isEmpty && Set(spent.map { $0.body["transaction_id"] as? String ?? "" }).count == 1, "every 200 is the one spend")
        let retry = try await Self.send(ports[2], "POST", "/v1/credits/consume", key: open, body: spend, idempotencyKey: "order-1")
        #expect(retry.status == 200 && retry.replayed && retry.body["transaction_id"] as? String == spent.first?.body["transaction_id"] as? String)
        #expect(try await scalar(db, "SELECT count(*)::int FROM credit_transactions WHERE kind = 'consume'") == 1)

        // A hold placed through one server, captured through another, and its release through the third refused.
        let hold = try await Self.send(ports[0], "POST", "/v1/credits/holds", key: open, body: #"{"amount": 100}"#)
        #expect(hold.status == 201)
        let holdID = try #require(hold.body["hold_id"] as? String)
        #expect(try await Self.send(ports[1], "POST", "/v1/credits/holds/\(holdID)/capture", key: open, body: #"{"amount": 60}"#).status == 200)
        #expect(try await Self.send(ports[2], "POST", "/v1/credits/holds/\(holdID)/release", key: open, body: "{}").status == 409)

        // Round robin: the limited key's allowance (300) holds across servers, then the account's balance does.
        func flood(_ key: String, _ count: Int) async throws -> [Int] {
            try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<count {
                    group.addTask { try await Self.send(ports[index % 3], "POST", "/v1/credits/consume", key: key, body: spend).status }
                }
                var all: [Int] = []
                for try await status in group { all.append(status) }
                return all
            }
        }
        let first = try await flood(limited, 45)
        #expect(first.filter { $0 == 200 }.count == 30 && first.filter { $0 == 402 }.count == 15, "\(Dictionary(grouping: first, by: { $0 }).mapValues(\.count))")
        // 1200 − 10 − 60 − 300 leaves 830: 83 spends of 10.
        let second = try await flood(open, 100)
        #expect(second.filter { $0 == 200 }.count == 83 && second.filter { $0 == 402 }.count == 17, "\(Dictionary(grouping: second, by: { $0 }).mapValues(\.count))")
        #expect(try await scalar(db, "SELECT balance::int FROM user_credits") == 0)

        // The outbox is shared: a sign-up's mail is sent by one server, once.
        #expect(try await Self.send(ports[1], "POST", "/v1/auth/signup", key: nil, body: #"{"email": "new@example.com", "password": "new-password-1"}"#).status == 202)
        var mails: [String] = []
        for _ in 0..<100 {
            mails = ((try? FileManager.default.contentsOfDirectory(atPath: mail)) ?? []).filter { $0.hasSuffix(".eml") }
            if !mails.isEmpty, try await scalar(db, "SELECT count(*)::int FROM outbox WHERE delivered_at IS NULL") == 0 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        try await Task.sleep(for: .seconds(1))
        mails = ((try? FileManager.default.contentsOfDirectory(atPath: mail)) ?? []).filter { $0.hasSuffix(".eml") }
        #expect(mails.count == 1, "one mail, sent once: \(mails)")

        let results = await stop()
        for result in results { #expect(result.status == 0, Comment(rawValue: String(result.stderr.suffix(2000)))) }
        let audit = try await TallyProcess.run(["db", "audit", "--database-url", url])
        #expect(audit.status == 0, Comment(rawValue: audit.stdout + audit.stderr))
    }
}
