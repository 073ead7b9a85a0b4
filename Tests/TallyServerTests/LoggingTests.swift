import Foundation
import Synchronization
import Hummingbird
import HummingbirdTesting
import Logging
import NIOConcurrencyHelpers
import TallyCredits
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyServer

/// Logs: a request's database statements log to the request's logger (with its request id), and no log line,
/// even at trace, holds a password, a session token, an API key or a row's values.
@Suite struct LoggingTests {
    @Test func statementsLogWithTheRequestIDAndNoLogHoldsASecret() async throws {
        let lines = LogLines()
        try await withTallyServer(configure: { settings in
            settings.logLevel = .trace
            settings.logger = Logger(label: "tally") { _ in lines.handler }
        }) { client, db in
            let admin = try await makeAdmin(client, db)
            let password = "password123"
            let user = try await signup(client, "logged@example.com")
            try await grant(client, admin, user: user.id, 50)
            let key = try await newKey(client, user)
            let spend = try await call(client, "/v1/credits/consume", .post, key, ["amount": 7, "metadata": ["card": "4242-row-value"]])
            #expect(spend.status == .ok)
            let login = try await call(client, "/v1/auth/login", .post, nil, ["email": "logged@example.com", "password": password])
            #expect(login.status == .ok)

            let logged = lines.all
            // A statement the spend ran logged with the spend's request id.
            let statementLines = logged.filter { $0.label == "tally" && $0.message.contains("Row stream received rows") }
            #expect(!statementLines.isEmpty, "no statement logged to a request's logger")
            let requestIDs = Set(statementLines.compactMap { $0.metadata["hb.request.id"] })
            #expect(requestIDs.count >= 4, "statements of several requests, each with its id: \(requestIDs)")
            // The rest is work of the server's own, marked as such: spends sent together, maintenance.
            let unmarked = statementLines.filter { $0.metadata["hb.request.id"] == nil && $0.metadata["tally.work"] == nil }
            #expect(unmarked.isEmpty, "a statement logged without a request id or a tally.work mark: \(unmarked.first?.text ?? "")")
            #expect(statementLines.contains { $0.metadata["tally.work"] == "consume-batch" }, "the spend's batch logs as such")

            for secret in [password, admin.token, user.token, key, "4242-row-value"] {
                let leaking = logged.filter { $0.text.contains(secret) }
                #expect(leaking.isEmpty, "a log line holds \(secret.prefix(12))…: \(leaking.first?.text.prefix(300) ?? "")")
            }
        }
    }
}

/// Log lines kept in memory.
final class LogLines: Sendable {
    struct Line: Sendable {
        var level: Logger.Level = .info
        var label: String
        var message: String
        var metadata: [String: String]
        var text: String
    }

    private let lines = Mutex<[Line]>([])

    var all: [Line] { lines.withLock { $0 } }

    var handler: Handler { Handler(lines: self) }

    func append(_ line: Line) { lines.withLock { $0.append(line) } }

    struct Handler: LogHandler {
        let lines: LogLines
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let merged = metadata.merging(event.metadata ?? [:]) { $1 }
            let flat = merged.mapValues { "\($0)" }
            lines.append(Line(
                level: event.level, label: "tally", message: "\(event.message)", metadata: flat,
                text: "\(event.level) \(event.message) \(flat.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))"))
        }
    }
}
