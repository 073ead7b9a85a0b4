import Foundation
import Hummingbird
import HummingbirdTesting
import TallyCredits
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyServer

/// Mail goes through the transactional outbox to a real SMTP server (aiosmtpd from PyPI, writing a Maildir),
/// and the test follows the link in the mail it received.
@Suite(.slot) struct MailTests {
    /// An aiosmtpd server on a free port for `body`, stopped after it.
    static func withSMTPServer(_ body: (_ port: Int, _ server: SMTPServer) async throws -> Void) async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tally-smtp-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let server = try await SMTPServer.start(folder: folder)
        do {
            try await body(server.port, server)
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    @Test func aPasswordResetTravelsByMailAndWorksOnce() async throws {
        try await Self.withSMTPServer { port, smtp in
            try await withTallyServer(configure: {
                $0.mail = .smtp(SMTPSettings(host: "127.0.0.1", port: port, user: nil, password: nil, startTLS: .whenOffered))
                $0.mailFrom = "accounts@tally.example"
                $0.publicURL = "https://tally.example"
                $0.outboxInterval = .milliseconds(100)
            }) { client, db in
                let ada = try await signup(client, "ada@example.com")
                // The same answer for an address with an account and one without; mail only for the first.
                let known = try await call(client, "/v1/auth/password-reset", .post, nil, ["email": "ADA@example.com"])
                let unknown = try await call(client, "/v1/auth/password-reset", .post, nil, ["email": "nobody@example.com"])
                #expect(known.status == .accepted && unknown.status == .accepted)
                #expect(String(buffer: known.body) == String(buffer: unknown.body))

                let mails = try await smtp.mails(count: 1)
                #expect(mails.count == 1)
                let mail = try #require(mails.first)
                #expect(mail.contains("To: <ada@example.com>") && mail.contains("From: Tally <accounts@tally.example>"))
                #expect(mail.contains("Subject: Reset your Tally password") && mail.contains("Message-ID: <tally-outbox-"))
                let link = try #require(mail.split(whereSeparator: \.isNewline).first { $0.hasPrefix("https://tally.example/reset-password?token=") })
                let token = String(try #require(link.split(separator: "=").last))
                #expect(token.hasPrefix("tly_reset_"))

                // Delivered: marked so, its body (the link) erased from the database.
                #expect(try await scalar(db, "SELECT count(*) FROM outbox WHERE delivered_at IS NOT NULL AND payload->>'text' NOT LIKE '%tly_reset_%'") == 1)
                #expect(try await scalar(db, "SELECT count(*) FROM outbox") == 1)

                let reset = try await call(client, "/v1/auth/password-reset/confirm", .post, nil, ["token": token, "new_password": "a fresh passphrase"])
                #expect(reset.status == .ok)
                #expect(object(reset.body)["ended_sessions"] as? Int == 1)
                #expect(try await call(client, "/v1/me", .get, ada.token).status == .unauthorized, "the reset ends every session")
                let again = try await call(client, "/v1/auth/password-reset/confirm", .post, nil, ["token": token, "new_password": "another passphrase"])
                #expect(again.status == .badRequest, "a reset token works once")
                let login = try await call(client, "/v1/auth/login", .post, nil, ["email": "ada@example.com", "password": "a fresh passphrase"])
                #expect(login.status == .ok)
                let forged = String(token.dropLast()) + (token.last == "A" ? "B" : "A")
                #expect(try await call(client, "/v1/auth/password-reset/confirm", .post, nil, ["token": forged, "new_password": "x passphrase"]).status == .badRequest)
            }
        }
    }

    @Test func aMailThatCannotBeSentYetIsKeptAndRetried() async throws {
        // Nothing listens on the SMTP port at first: the mail stays in the outbox with the cause, and goes out
        // once a server listens there.
        let port = try LocalCluster.freePort()
        try await withTallyServer(configure: {
            $0.mail = .smtp(SMTPSettings(host: "127.0.0.1", port: port, user: nil, password: nil, startTLS: .whenOffered))
            $0.outboxInterval = .milliseconds(100)
        }) { client, db in
            _ = try await signup(client, "ada@example.com")
            #expect(try await call(client, "/v1/auth/password-reset", .post, nil, ["email": "ada@example.com"]).status == .accepted)
            let deadline = ContinuousClock.now + .seconds(10)
            while try await scalar(db, "SELECT count(*) FROM outbox WHERE last_error IS NOT NULL") == 0, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(try await scalar(db, "SELECT count(*) FROM outbox WHERE last_error IS NOT NULL AND delivered_at IS NULL") == 1)
        }
    }
}
