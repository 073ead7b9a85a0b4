import Foundation
import PostgresNIO
import TallyPostgres
import TallyTestSupport
import Testing

/// examples/fltr-auth/README.md, step by step, as a user runs it; and the README's walkthroughs (from
/// `tally serve` to a spend, and the product's side), run as written.
@Suite struct WalkthroughTests {
    @Test(.freshDatabase) func theReadmeFromServeToASpendWithCurl() async throws {
        let output = try await runReadmeBlock("walkthrough")
        #expect(output.contains("check your email"), Comment(rawValue: output))
        let lines = output.split(separator: "\n").map(String.init)
        let spend = try #require(lines.first { $0.contains("transaction_id") }, Comment(rawValue: output))
        #expect(spend.contains("\"balance\":997") && spend.contains("\"available\":997"), Comment(rawValue: spend))
        let balance = try #require(lines.first { $0.contains("account_id") }, Comment(rawValue: output))
        #expect(balance.contains("\"available\":997") && balance.contains("\"held\":0"), Comment(rawValue: balance))
        #expect(output.contains("the balance is now 1000"))
    }

    /// The README's product side: a service key, a customer by the product's id, a grant after a payment
    /// (retried), a key for the customer, a spend, the balance by the product's id.
    @Test(.freshDatabase) func theReadmeWiringTallyIntoAProduct() async throws {
        let output = try await runReadmeBlock("product")
        let lines = output.split(separator: "\n").map(String.init)
        let customer = try #require(lines.first { $0.contains("\"customer\"") }, Comment(rawValue: output))
        #expect(customer.contains("\"external_id\":\"user_2NNEqL2\""), Comment(rawValue: customer))
        #expect(lines.filter { $0.contains("\"amount\":5000") }.count == 2, "the grant and its retry: \(output)")
        let balance = try #require(lines.last { $0.contains("\"grants\"") }, Comment(rawValue: output))
        #expect(balance.contains("\"balance\":4997") && balance.contains("\"available\":4997"), Comment(rawValue: balance))
    }

    /// Runs the README's block between `<!-- NAME:start -->` and `<!-- NAME:end -->` as a user pastes it, with
    /// `tally serve` running in the same directory on a port of its own; the block's output.
    func runReadmeBlock(_ name: String) async throws -> String {
        let readme = try String(contentsOf: TestDatabase.packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let start = try #require(readme.range(of: "<!-- \(name):start -->"))
        let end = try #require(readme.range(of: "<!-- \(name):end -->"))
        let block = readme[start.upperBound..<end.lowerBound]
            .replacingOccurrences(of: "```sh", with: "").replacingOccurrences(of: "```", with: "")
        #expect(block.contains("http://127.0.0.1:8080"))

        let db = try TestDatabase.current
        let port = try LocalCluster.freePort()
        let env = ["DATABASE_URL": db.url()]
        // The server and the pasted commands in one directory of their own, as a user's two terminals are:
        // the mail the walkthrough follows is a file under .tally/mail there.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tally-readme-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try TallyProcess.launch(
            ["serve", "--port", String(port), "--metrics-port", "0", "--migrate"], environment: env, in: directory)
        defer { kill(server.pid, SIGINT) }
        var up = false
        for _ in 0..<300 where !up {
            up = (try? await Command.run("/usr/bin/curl", ["-sf", "http://127.0.0.1:\(port)/readyz"]))?.succeeded ?? false
            if !up { try await Task.sleep(for: .milliseconds(200)) }
        }
        #expect(up, "the server did not become ready")

        // As pasted into a shell, with `tally` the built binary and the server on this test's port.
        let script = "set -euo pipefail\ncd '\(directory)'\ntally() { \"\(TallyProcess.executable)\" \"$@\"; }\n"
            + block.replacingOccurrences(of: "http://127.0.0.1:8080", with: "http://127.0.0.1:\(port)")
        let result = try await Command.run("/bin/bash", ["-c", script], environment: env)
        #expect(result.succeeded, Comment(rawValue: result.output))

        kill(server.pid, SIGINT)
        #expect(await TallyProcess.collect(server).status == 0)
        return result.output
    }

    @Test(.freshDatabase) func theSeedsProductionMigrationWithTallyCommands() async throws {
        let example = TestDatabase.packageRoot.appendingPathComponent("examples/fltr-auth").path
        let dir = example + "/migrations"
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("tally-walkthrough-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }

        let db = try TestDatabase.current
        let env = ["DATABASE_URL": db.url()]
        func tally(_ args: String...) async throws -> TallyProcess.Result { try await tally(args) }
        func tally(_ args: [String]) async throws -> TallyProcess.Result {
            try await TallyProcess.run(args + ["--data-dir", scratch + "/postgres"], environment: env)
        }

        let setup = try await Command.run("/bin/bash", [example + "/setup.sh"], environment: env)
        #expect(setup.succeeded, Comment(rawValue: setup.output))

        // 1. The history: nothing in drizzle's table, three hand-typed rows in public's.
        let status = try await tally("migrate", "status", "--dir", dir)
        #expect(status.status == 0)
        #expect(status.stderr.contains("public.__drizzle_migrations also exists (3 rows)"))
        #expect(status.stdout.contains("0 applied, 3 pending"))
        let handTyped = try await tally("migrate", "status", "--dir", dir, "--history-table", "public.__drizzle_migrations")
        #expect(handTyped.status == 1)
        #expect(handTyped.stdout.contains("3 changed"))

        // 2. Backup.
        let backup = try await tally("db", "backup")
        #expect(backup.status == 0, Comment(rawValue: backup.stderr))
        let backupPath = try #require(backup.stdout.split(separator: " ").first { $0.hasSuffix(".dump") }.map(String.init))
        #expect(backupPath.hasPrefix(scratch + "/backups/"))
        #expect(FileManager.default.fileExists(atPath: backupPath))

        // 3. Baseline what is there.
        let baseline = try await tally("migrate", "baseline", "--dir", dir, "--through", "0001_quiet_storm")
        #expect(baseline.status == 0, Comment(rawValue: baseline.stderr))
        #expect(baseline.stdout.contains("Marked as applied (baseline): 0000_bumpy_thor, 0001_quiet_storm"))

        // 4. The plan is blocked by two orphans.
        let blocked = try await tally("migrate", "plan", "--dir", dir)
        #expect(blocked.status == 1)
        #expect(blocked.stdout.contains("2 row(s) of public.user_credits violate it"))
        #expect(blocked.stdout.contains("usr_test_deleted_1; usr_test_deleted_2"))
        #expect(blocked.stdout.contains("SHARE UPDATE EXCLUSIVE"))

        // 5. Archive them with their dependents.
        let clean = try await tally(
            "db", "orphans", "--fk", "user_credits.user_id=users.id", "--include", "credit_transactions.user_id",
            "--include", "api_key_credits.user_id", "--clean", "--reason", "orphaned test accounts", "--yes")
        #expect(clean.status == 0, Comment(rawValue: clean.stderr))
        #expect(clean.stdout.contains("Archived and deleted (batch 1)"))
        for line in ["public.api_key_credits      1", "public.credit_transactions  3", "public.user_credits         2"] {
            #expect(clean.stdout.contains(line), "\(line)")
        }
        #expect(try await tally("migrate", "plan", "--dir", dir).status == 0)

        // 6. The foreign key goes on online, after a backup.
        let up = try await tally("migrate", "up", "--dir", dir)
        #expect(up.status == 0, Comment(rawValue: up.stderr))
        #expect(up.stdout.contains("Applied 1: 0002_flashy_nova"))
        #expect(up.stderr.contains("Backup: " + scratch + "/backups/"))
        #expect(up.stderr.contains("go in NOT VALID and are validated after commit"))

        // 7. Verify: the duplicate team key is the only drift.
        let verify = try await tally("db", "verify", "--dir", dir)
        #expect(verify.status == 1)
        #expect(verify.stdout.contains("extra  constraint public.user_credits.user_credits_team_id_fkey"))
        #expect(verify.stdout.contains("redundant-foreign-key: user_credits_team_id_fkey and user_credits_team_id_teams_id_fk"))
        #expect(!verify.stdout.contains("missing"))
        #expect(try await tally("migrate", "validate", "--dir", dir).status == 0)

        // 8. The FastAPI side: its SQLModel model, as the seed's team had it, lacks the key the database now has.
        let python = TestDatabase.packageRoot.appendingPathComponent(".build/fuzz-venv/bin/python").path
        let models = ["--sqlalchemy", "models.credits:SQLModel.metadata", "--python", python]
        let gap = try await tally(["db", "drift", "--app-dir", example + "/fastapi"] + models)
        #expect(gap.status == 2, Comment(rawValue: gap.stdout + gap.stderr))
        #expect(gap.stdout.contains(
            "sqlmodel: extra-foreign-key user_credits.user_id: declared no ForeignKey; the database has user_credits_user_id_users_id_fk → users(id) ON DELETE CASCADE ON UPDATE NO ACTION: add foreign_key=\"users.id\" (ondelete=\"CASCADE\") to the model's user_id"),
            Comment(rawValue: gap.stdout))
        // The runbook's step 5, done: the model declares the key; no drift.
        let fixed = scratch + "/fastapi"
        try FileManager.default.createDirectory(atPath: fixed + "/models", withIntermediateDirectories: true)
        let model = try String(contentsOfFile: example + "/fastapi/models/credits.py", encoding: .utf8)
        #expect(model.contains("\n    user_id: str\n"))
        #expect(model.contains("foreign_key=\"teams.id\")"))
        // Both keys as the database has them (team_id's cascade shows once the spare key is gone, step 9).
        try model.replacingOccurrences(of: "\n    user_id: str\n", with: "\n    user_id: str = Field(foreign_key=\"users.id\", ondelete=\"CASCADE\")\n")
            .replacingOccurrences(of: "foreign_key=\"teams.id\")", with: "foreign_key=\"teams.id\", ondelete=\"CASCADE\")")
            .write(toFile: fixed + "/models/credits.py", atomically: true, encoding: .utf8)
        try "".write(toFile: fixed + "/models/__init__.py", atomically: true, encoding: .utf8)
        let matched = try await tally(["db", "drift", "--app-dir", fixed] + models)
        #expect(matched.status == 0, Comment(rawValue: matched.stdout + matched.stderr))
        #expect(matched.stdout.contains("No drift: the database has what sqlmodel: models.credits:SQLModel.metadata declares."))

        // 9. Both apps at once, from the ownership manifest: the model's gap, and the spare team key no app declares.
        let both = try await tally(["db", "drift", "--owners", example + "/tally.toml", "--python", python])
        #expect(both.status == 2, Comment(rawValue: both.stdout + both.stderr))
        #expect(both.stdout.contains("between the database and fastapi (sqlmodel: models.credits:SQLModel.metadata)"))
        #expect(both.stdout.contains("drizzle: extra-foreign-key user_credits.team_id: the database has user_credits_team_id_fkey → teams(id) ON DELETE NO ACTION ON UPDATE NO ACTION; not declared: a second key of the same columns and target: drop it"),
                Comment(rawValue: both.stdout))
        #expect(both.stdout.components(separatedBy: "difference(s)").count == 3, "one finding per app: \(both.stdout)")
        // Fixed: the spare key dropped, the model pointed at its fixed copy.
        try await withSingleConnection(db) { try await $0.execute("ALTER TABLE user_credits DROP CONSTRAINT user_credits_team_id_fkey") }
        let manifest = try String(contentsOfFile: example + "/tally.toml", encoding: .utf8)
            .replacingOccurrences(of: "drizzle = \"migrations\"", with: "drizzle = \"\(dir)\"")
            .replacingOccurrences(of: "app_dir = \"fastapi\"", with: "app_dir = \"\(fixed)\"")
        try manifest.write(toFile: scratch + "/tally.toml", atomically: true, encoding: .utf8)
        let healthy = try await tally(["db", "drift", "--owners", scratch + "/tally.toml", "--python", python])
        #expect(healthy.status == 0, Comment(rawValue: healthy.stdout + healthy.stderr))
        #expect(healthy.stdout.components(separatedBy: "No drift").count == 3, Comment(rawValue: healthy.stdout))

        // Rolling back: the key, then the archived rows, then a restore of the first backup elsewhere.
        let down = try await tally("migrate", "down", "--dir", dir, "--yes")
        #expect(down.stdout.contains("Reverted: 0002_flashy_nova"), Comment(rawValue: down.stderr))
        let restore = try await tally("db", "orphans", "--restore", "1", "--yes")
        #expect(restore.status == 0, Comment(rawValue: restore.stderr))
        #expect(restore.stdout.contains("2 row(s) of public.user_credits"))
        try await TestDatabase.withFreshDatabase { other in
            let restored = try await TallyProcess.run(["db", "restore", backupPath, "--database-url", other.url()])
            #expect(restored.status == 0, Comment(rawValue: restored.stderr))
            let again = try await TallyProcess.run(["migrate", "status", "--dir", dir, "--database-url", other.url()])
            #expect(again.stdout.contains("0 applied, 3 pending"))
        }
    }
}
