import Foundation
import TallyPostgres

#if canImport(Glibc)
import Glibc
#endif

/// A webhook receiver for tests: `scripts/webhook-receiver.py`, which verifies each delivery with the Standard
/// Webhooks reference library (`standardwebhooks`, PyPI, installed by .ci/run into .build/fuzz-venv) and logs it.
public struct WebhookReceiver: Sendable {
    public let port: Int
    public let log: String
    let child: Command.Child

    /// One request as the receiver saw it.
    public struct Received: Sendable {
        public var webhookID: String
        public var timestamp: String?
        /// Which of the receiver's secrets verified it (their indexes).
        public var verified: [Int]
        public var signatures: Int
        public var type: String?
        public var data: [String: String]
        public var answer: String
        public var receivedAt: Double
    }

    public var url: String { "http://127.0.0.1:\(port)/hooks" }

    /// A receiver verifying with `secrets`, answering each webhook-id's deliveries by `plan` ("500,200", "hang",
    /// "410"), on a port of its own; `port` to take a given one (to come back on the same address).
    public static func start(
        secrets: [String], plan: String = "200", retryAfter: Int? = nil, delay: Double? = nil, port: Int? = nil, folder: String
    ) async throws -> WebhookReceiver {
        let python = SMTPServer.repository.appendingPathComponent(".build/fuzz-venv/bin/python").path
        let script = SMTPServer.repository.appendingPathComponent("scripts/webhook-receiver.py").path
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw TallyPostgresError(.commandFailed, "standardwebhooks is not installed: run .ci/run, or python3 -m venv .build/fuzz-venv && .build/fuzz-venv/bin/pip install standardwebhooks")
        }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let port = try port ?? LocalCluster.freePort()
        let log = folder + "/received-\(port)-\(UUID().uuidString.prefix(6)).jsonl"
        var arguments = [script, "--port", String(port), "--plan", plan, "--log", log] + secrets.flatMap { ["--secret", $0] }
        if let retryAfter { arguments += ["--retry-after", String(retryAfter)] }
        if let delay { arguments += ["--delay", String(delay)] }
        let child = try Command.spawn(python, arguments, stdout: folder + "/receiver-\(port).out", stderr: folder + "/receiver-\(port).err")
        let deadline = ContinuousClock.now + .seconds(20)
        while !SMTPServer.accepts(port), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        guard SMTPServer.accepts(port) else {
            let error = (try? String(contentsOfFile: folder + "/receiver-\(port).err", encoding: .utf8)) ?? ""
            throw TallyPostgresError(.commandFailed, "the webhook receiver did not start: \(error)")
        }
        return WebhookReceiver(port: port, log: log, child: child)
    }

    public func stop() async {
        kill(child.pid, SIGKILL)
        _ = await child.waitAsync()
    }

    /// What has arrived so far, oldest first.
    public func received() -> [Received] {
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else { return nil }
            let payload = object["payload"] as? [String: Any] ?? [:]
            return Received(
                webhookID: object["webhook_id"] as? String ?? "", timestamp: object["timestamp"] as? String,
                verified: object["verified"] as? [Int] ?? [], signatures: object["signatures"] as? Int ?? 0,
                type: payload["type"] as? String, data: (payload["data"] as? [String: Any] ?? [:]).mapValues { "\($0)" },
                answer: object["answer"] as? String ?? "", receivedAt: object["received_at"] as? Double ?? 0)
        }
    }

    /// What has arrived, once `done` holds for it (or `within` has passed).
    public func received(within: Duration = .seconds(20), until done: ([Received]) -> Bool) async throws -> [Received] {
        let deadline = ContinuousClock.now + within
        while true {
            let now = received()
            if done(now) || ContinuousClock.now > deadline { return now }
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}
