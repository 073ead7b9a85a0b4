import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import PostgresNIO
import TallyCredits
import TallyPostgres
import Testing
@testable import TallyServer

/// An admin's grant names the admin and the request, is logged at notice, and is in an append-only audit
/// log only admins read.
@Suite struct AdminAuditTests {
    @Test func aGrantIsRecordedWithItsAdminAndRequest() async throws {
        let lines = LogLines()
        try await withTallyServer(configure: { settings in
            settings.logLevel = .notice
            settings.logger = Logger(label: "tally") { _ in lines.handler }
        }) { client, db in
            let admin = try await makeAdmin(client, db)
            let user = try await signup(client, "ada@example.com")
            try await grant(client, admin, user: user.id, 50)

            let page = try await call(client, "/v1/admin/audit", .get, admin.token)
            #expect(page.status == .ok)
            let entries = object(page.body)["entries"] as? [[String: Any]] ?? []
            #expect(entries.count == 1)
            let entry = try #require(entries.first)
            #expect(entry["action"] as? String == "grant")
            #expect(entry["actor_user_id"] as? String == admin.id)
            #expect(entry["actor"] as? String == "admin admin@example.com")
            let subject = entry["subject"] as? [String: Any] ?? [:]
            #expect(subject["amount"] as? Int == 50 && subject["user_id"] as? String == user.id)
            let requestID = try #require(entry["request_id"] as? String)

            // The notice in the log carries the same request id; the grant row names the admin and request.
            let notices = lines.all.filter { $0.level == .notice && $0.message.contains("administrative act: grant") }
            #expect(notices.count == 1)
            #expect(notices.first?.metadata["hb.request.id"] == requestID)
            #expect(notices.first?.metadata["tally.actor"] == "admin admin@example.com")
            let adminID = try #require(UUID(uuidString: admin.id))
            #expect(try await scalar(db, "SELECT count(*) FROM credit_grants WHERE granted_by = \(adminID) AND request_id = \(requestID)") == 1)

            // Only admins read it; nobody rewrites it, a superuser included.
            #expect(try await call(client, "/v1/admin/audit", .get, user.token).status == .forbidden)
            #expect(try await call(client, "/v1/admin/audit", .get, nil).status == .unauthorized)
            for statement: PostgresQuery in ["UPDATE admin_audit SET actor = 'someone else'", "DELETE FROM admin_audit", "TRUNCATE admin_audit"] {
                await #expect(throws: PSQLError.self, "\(statement.sql)") {
                    try await withSingleConnection(db) { try await $0.execute(statement) }
                }
            }
            #expect(try await scalar(db, "SELECT count(*) FROM admin_audit WHERE actor = 'admin admin@example.com'") == 1)

            // Pages, newest first.
            for amount in 1...3 { try await grant(client, admin, user: user.id, amount) }
            let first = object(try await call(client, "/v1/admin/audit?limit=2", .get, admin.token).body)
            let firstAmounts = (first["entries"] as? [[String: Any]] ?? []).map { ($0["subject"] as? [String: Any])?["amount"] as? Int }
            #expect(firstAmounts == [3, 2])
            let cursor = try #require(first["next_cursor"] as? String)
            let second = object(try await call(client, "/v1/admin/audit?limit=2&cursor=\(cursor)", .get, admin.token).body)
            #expect((second["entries"] as? [[String: Any]] ?? []).map { ($0["subject"] as? [String: Any])?["amount"] as? Int } == [1, 50])
            #expect(second["next_cursor"] is NSNull || second["next_cursor"] == nil)
        }
    }
}
