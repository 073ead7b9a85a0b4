import Foundation
import PostgresNIO
import TallyPostgres
import TallyTestSupport
import Testing

/// `tally db drift` as a user runs it: exit 0 without drift, 2 with, 1 on an error; text, json and github.
@Suite struct DriftCommandTests {
    @Test(.freshDatabase) func exitStatusAndFormats() async throws {
        let db = try TestDatabase.current
        let url = ["--database-url", db.url()]
        let folder = TestDatabase.packageRoot.appendingPathComponent("Tests/DriftCorpus/v7-shop").path
        #expect(try await TallyProcess.run(["migrate", "up", "--no-backup", "--dir", folder] + url).status == 0)

        let clean = try await TallyProcess.run(["db", "drift", "--drizzle", folder] + url)
        #expect(clean.status == 0, Comment(rawValue: clean.stdout + clean.stderr))
        #expect(clean.stdout.contains("No drift: the database has what drizzle: \(folder)/meta/0000_snapshot.json declares."))

        try await withSingleConnection(db) { try await $0.execute("ALTER TABLE orders DROP CONSTRAINT orders_user_id_users_id_fk") }
        let drift = try await TallyProcess.run(["db", "drift", "--drizzle", folder] + url)
        #expect(drift.status == 2, Comment(rawValue: drift.stdout + drift.stderr))
        #expect(drift.stdout.contains("1 difference(s)"))
        #expect(drift.stdout.contains("drizzle: missing-foreign-key orders.user_id: declared orders_user_id_users_id_fk → users(id) ON DELETE CASCADE ON UPDATE NO ACTION; the database has none"))

        let json = try await TallyProcess.run(["db", "drift", "--drizzle", folder, "--format", "json"] + url)
        #expect(json.status == 2)
        let answer = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any] ?? [:]
        #expect(answer["has_drift"] as? Bool == true)
        let findings = (answer["reports"] as? [[String: Any]])?.first?["findings"] as? [[String: Any]] ?? []
        #expect(findings.count == 1 && findings.first?["kind"] as? String == "missing-foreign-key", "\(json.stdout)")

        let github = try await TallyProcess.run(["db", "drift", "--drizzle", folder, "--format", "github"] + url)
        #expect(github.status == 2)
        #expect(github.stdout.hasPrefix("::error title=tally drift missing-foreign-key orders.user_id::drizzle: missing-foreign-key"), "\(github.stdout)")

        let nowhere = try await TallyProcess.run(["db", "drift", "--drizzle", "/no/such/folder"] + url)
        #expect(nowhere.status == 1 && nowhere.stderr.contains("/no/such/folder has no Drizzle snapshot"), Comment(rawValue: nowhere.stderr))
    }
}
