import Foundation
import PostgresNIO
import Synchronization
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

    /// A mail server that takes mail only over TLS and after AUTH: Tally upgrades with STARTTLS (or speaks TLS
    /// from the first byte with smtps://), checks the certificate against the CA it was told to trust, and logs
    /// in. A wrong password, or a server whose certificate another CA signed, keeps the mail with the cause.
    @Test(arguments: [SMTPServer.TLSMode.startTLS, .implicit])
    func mailGoesOverTLSAfterAuthAndOnlyToTheServerItTrusts(mode: SMTPServer.TLSMode) async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tally-smtps-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let certificates = try await TestCertificates.make(in: folder + "/tls")
        let smtp = try await SMTPServer.start(folder: folder, secured: SMTPServer.Secured(
            certificate: certificates.serverCertificate, key: certificates.serverKey, mode: mode, user: "tally", password: "s3cret pass"))
        defer { Task { await smtp.stop() } }
        func transport(password: String, ca: String) throws -> MailTransport {
            let query = mode == .implicit ? "?cafile=\(ca)" : "?starttls=required&cafile=\(ca)"
            return try MailTransport(url: "\(mode == .implicit ? "smtps" : "smtp")://tally:\(password)@localhost:\(smtp.port)\(query)")
        }
        /// Asks for a reset mail through `mail`; the outbox row's error once delivery was tried (nil: delivered).
        func deliver(through mail: MailTransport) async throws -> String? {
            let outcome = Mutex<String?>(nil)
            try await withTallyServer(configure: { $0.mail = mail; $0.outboxInterval = .milliseconds(100) }) { client, db in
                _ = try await signup(client, "ada@example.com")
                #expect(try await call(client, "/v1/auth/password-reset", .post, nil, ["email": "ada@example.com"]).status == .accepted)
                let deadline = ContinuousClock.now + .seconds(15)
                while ContinuousClock.now < deadline {
                    if try await scalar(db, "SELECT count(*) FROM outbox WHERE delivered_at IS NOT NULL") == 1 { return }
                    let error = try await scalarText(db, "SELECT coalesce(last_error, '') FROM outbox")
                    if !error.isEmpty {
                        outcome.withLock { $0 = error }
                        return
                    }
                    try await Task.sleep(for: .milliseconds(100))
                }
                outcome.withLock { $0 = "neither delivered nor failed within 15 s" }
            }
            return outcome.withLock { $0 }
        }

        #expect(try await deliver(through: transport(password: "s3cret%20pass", ca: certificates.ca)) == nil)
        let mails = try await smtp.mails(count: 1)
        #expect(mails.count == 1 && mails.first?.contains("Subject: Reset your Tally password") == true)

        let refused = try #require(try await deliver(through: transport(password: "wrong", ca: certificates.ca)))
        #expect(refused.contains("AUTH PLAIN") && refused.contains("535"), "the server's own words: \(refused)")
        let untrusted = try #require(try await deliver(through: transport(password: "s3cret%20pass", ca: certificates.otherCA)))
        #expect(untrusted.lowercased().contains("certificate"), "the TLS library's words: \(untrusted)")
        #expect(try await smtp.mails(count: 2, within: .seconds(1)).count == 1, "nothing else arrived")
    }

    @Test func mailURLsSayWhatIsWrongWithThem() throws {
        #expect(try MailTransport(url: "smtp://mail.example.com") == .smtp(SMTPSettings(
            host: "mail.example.com", port: 587, user: nil, password: nil, startTLS: .whenOffered)))
        #expect(try MailTransport(url: "smtps://a%40b:p%20w@mail.example.com?cafile=/etc/hostname") == .smtp(SMTPSettings(
            host: "mail.example.com", port: 465, user: "a@b", password: "p w", startTLS: .off, implicitTLS: true, caFile: "/etc/hostname")))
        #expect(try MailTransport(url: "smtp://m.example.com:2525?starttls=required") == .smtp(SMTPSettings(
            host: "m.example.com", port: 2525, user: nil, password: nil, startTLS: .required)))
        for (url, says) in [
            ("http://mail.example.com", "must look like smtp://"), ("smtp://", "must look like smtp://"),
            ("smtp://m.example.com?starttls=maybe", "?starttls=maybe"), ("smtps://m.example.com?starttls=required", "smtp:// only"),
            ("smtp://m.example.com?cafile=/no/such/ca.pem", "/no/such/ca.pem, which cannot be read"),
        ] {
            #expect { try MailTransport(url: url) } throws: { "\($0)".contains(says) }
        }
    }

    /// Someone invited who has no account yet: the invitation mail, a sign-up, the verification mail's link,
    /// and the invitation accepted from its link, all through a real SMTP server.
    @Test func anInvitationToANewAddressIsAcceptedAfterSignUpAndVerificationByMail() async throws {
        try await Self.withSMTPServer { port, smtp in
            try await withTallyServer(configure: {
                $0.mail = .smtp(SMTPSettings(host: "127.0.0.1", port: port, user: nil, password: nil, startTLS: .whenOffered))
                $0.publicURL = "https://tally.example"
                $0.outboxInterval = .milliseconds(100)
            }) { client, db in
                func line(_ mail: String, startingWith prefix: String) throws -> String {
                    String(try #require(mail.split(whereSeparator: \.isNewline).first { $0.hasPrefix(prefix) }, "no line \(prefix) in \(mail)"))
                }
                let owner = try await signup(client, "owner@example.com")
                let team = try await newTeam(client, owner, "Core")
                #expect(try await call(client, "/v1/teams/\(team)/invitations", .post, owner.token, ["email": "grace@example.com", "role": "admin"]).status == .created)
                let invitation = try #require(try await smtp.mails(count: 1).first)
                #expect(invitation.contains("To: <grace@example.com>") && invitation.contains("Subject: owner@example.com invited you to the team Core"))
                let invitationLink = try line(invitation, startingWith: "https://tally.example/invitations/")
                let invitationID = String(try #require(invitationLink.split(separator: "/").last))

                // Grace signs up: no session yet, a mail with a link instead.
                let signedUp = try await call(client, "/v1/auth/signup", .post, nil, ["email": "grace@example.com", "password": "grace's passphrase"])
                #expect(signedUp.status == .accepted && object(signedUp.body)["token"] == nil)
                let verification = try #require(try await smtp.mails(count: 2).first { $0.contains("Subject: Confirm your email") })
                #expect(verification.contains("To: <grace@example.com>"))
                let link = try line(verification, startingWith: "https://tally.example/verify-email?token=")
                let token = String(try #require(link.split(separator: "=").last))
                // Delivered: the link is gone from the database.
                #expect(try await scalar(db, "SELECT count(*) FROM outbox WHERE payload->>'text' LIKE '%tly_verify_%'") == 0)

                let verified = try await call(client, "/v1/auth/verify-email", .post, nil, ["token": token])
                #expect(verified.status == .ok)
                let grace = try #require(object(verified.body)["token"] as? String)
                let accepted = try await call(client, "/v1/invitations/\(invitationID)/accept", .post, grace)
                #expect(accepted.status == .ok)
                #expect((object(accepted.body)["team"] as? [String: Any])?["role"] as? String == "admin")
                let members = object(try await call(client, "/v1/teams/\(team)/members", .get, owner.token).body)["members"] as? [[String: Any]] ?? []
                #expect(Set(members.compactMap { $0["email"] as? String }) == ["owner@example.com", "grace@example.com"])
                #expect(try await smtp.mails(count: 3, within: .seconds(1)).count == 2, "two mails, no more")
            }
        }
    }

    /// A mail that could not go out for three days is tried no more (its error stays for an operator), and
    /// every message leaves the outbox a week after it was written.
    @Test func oldMailIsGivenUpAndPurged() async throws {
        try await withTallyServer(configure: { $0.maintenanceInterval = .seconds(1) }) { client, db in
            let mail = #"{"to": "ada@example.com", "subject": "s", "text": "t"}"#
            try await withSingleConnection(db) { connection in
                try await connection.execute(PostgresQuery(unsafeSQL: """
                    INSERT INTO outbox (kind, payload, created_at, available_at, delivered_at, last_error) VALUES
                      ('mail', '\(mail)', now() - interval '8 days', now() - interval '8 days', now() - interval '8 days', NULL),
                      ('mail', '\(mail)', now() - interval '8 days', now() - interval '1 hour', NULL, 'refused: 550 no such mailbox'),
                      ('mail', '\(mail)', now() - interval '4 days', now() - interval '1 hour', NULL, 'refused: 550 no such mailbox'),
                      ('mail', '\(mail)', now(), now(), NULL, NULL)
                    """))
            }
            // The fresh one goes out; the maintenance round purges the week-old ones.
            let deadline = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < deadline {
                let fresh = try await scalar(db, "SELECT count(*) FROM outbox WHERE delivered_at IS NOT NULL AND created_at > now() - interval '1 minute'")
                let old = try await scalar(db, "SELECT count(*) FROM outbox WHERE created_at < now() - interval '7 days'")
                if fresh == 1 && old == 0 { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            try await Task.sleep(for: .milliseconds(500))   // a few more rounds of the dispatcher
            #expect(try await scalar(db, "SELECT count(*) FROM outbox WHERE delivered_at IS NOT NULL AND created_at > now() - interval '1 minute'") == 1)
            #expect(try await scalar(db, "SELECT count(*) FROM outbox WHERE created_at < now() - interval '7 days'") == 0, "purged")
            #expect(try await scalar(db, "SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND attempts = 0 AND last_error LIKE 'refused%'") == 1,
                    "the four-day-old one is not tried again, its error kept")
            #expect(try await scalar(db, "SELECT count(*) FROM outbox") == 2)
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
