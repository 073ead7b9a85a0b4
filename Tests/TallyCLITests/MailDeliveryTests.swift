import Foundation
import PostgresNIO
import TallyPostgres
import TallyTestSupport
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A mail committed before `tally serve` is killed (-9) is delivered after the restart, once.
@Suite(.slot) struct MailDeliveryTests {
    @Test(.freshDatabase) func aMailCommittedBeforeAKillIsSentAfterTheRestartOnce() async throws {
        let db = try TestDatabase.current
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tally-mail-kill-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // No mail server yet: the mail cannot leave before the kill.
        let smtpPort = try LocalCluster.freePort()
        let port = try LocalCluster.freePort()
        let serve = ["serve", "--port", String(port), "--metrics-port", "0", "--database-url", db.url(), "--migrate", "--mail-url", "smtp://127.0.0.1:\(smtpPort)?starttls=off"]
        let first = try TallyProcess.launch(serve)
        #expect(try await getWhenUp("http://127.0.0.1:\(port)/readyz").0 == 200)
        #expect(try await TallyProcess.run(["users", "create", "--email", "ada@example.com", "--password", "password123", "--database-url", db.url()]).status == 0)

        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/v1/auth/password-reset")!)
        request.httpMethod = "POST"
        request.httpBody = Data(#"{"email": "ada@example.com"}"#.utf8)
        #expect((try await URLSession.shared.data(for: request).1 as? HTTPURLResponse)?.statusCode == 202)
        kill(first.pid, SIGKILL)
        _ = await TallyProcess.collect(first)
        #expect(try await scalar(db, "SELECT count(*) FROM outbox WHERE delivered_at IS NULL") == 1, "committed, not delivered")

        let smtp = try await SMTPServer.start(port: smtpPort, folder: folder)
        let second = try TallyProcess.launch(serve)
        // Due at once, or after a dispatcher's lease (60 s) if the kill came mid-delivery.
        let mails = try await smtp.mails(count: 1, within: .seconds(90))
        #expect(mails.count == 1)
        #expect(mails.first?.contains("Subject: Reset your Tally password") == true)
        // Once: nothing more arrives, and the outbox says delivered.
        try await Task.sleep(for: .seconds(2))
        #expect(try await smtp.mails(count: 2, within: .zero).count == 1)
        #expect(try await scalar(db, "SELECT count(*) FROM outbox WHERE delivered_at IS NOT NULL") == 1)
        kill(second.pid, SIGINT)
        _ = await TallyProcess.collect(second)
        await smtp.stop()
    }
}
