import Foundation
import PostgresNIO
import TallyPostgres
import TallyTestSupport
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `tally db roles` splits the database's powers: the owner migrates, the application role serves with DML
/// only; `tally serve` says when it runs with more than it needs.
@Suite(.slot) struct RolesCommandTests {
    @Test(.freshDatabase) func theApplicationRoleServesAndCanNeitherChangeTheSchemaNorRewriteTheLedger() async throws {
        let db = try TestDatabase.current
        // Roles are the cluster's: names of this test's own.
        let suffix = UUID().uuidString.prefix(6).lowercased()
        let (ownerRole, appRole) = ("owner_\(suffix)", "app_\(suffix)")
        let roles = try await TallyProcess.run(["db", "roles", "--owner-role", ownerRole, "--app-role", appRole, "--database-url", db.url()])
        #expect(roles.status == 0, Comment(rawValue: roles.stderr))
        func url(after marker: String) throws -> String {
            let line = try #require(roles.stdout.split(separator: "\n").first { $0.contains(marker) }, Comment(rawValue: roles.stdout))
            return String(try #require(line.split(separator: " ").last))
        }
        let ownerURL = try url(after: "owner (migrations, DDL) role")
        let appURL = try url(after: "application (tally serve) role")
        let app = try ConnectionSettings(url: appURL)
        #expect(app.user == appRole && app.password != nil)

        // Migrate as the owner, serve as the application role: no warning about the role.
        let port = try LocalCluster.freePort()
        let server = try TallyProcess.launch(["serve", "--port", String(port), "--metrics-port", "0", "--database-url", appURL, "--owner-url", ownerURL, "--migrate"])
        let ready = try? await getWhenUp("http://127.0.0.1:\(port)/readyz").0
        kill(server.pid, SIGINT)
        let served = await TallyProcess.collect(server)
        #expect(ready == 200, Comment(rawValue: served.stderr))
        #expect(served.stderr.contains("Applied migrations:"), Comment(rawValue: served.stderr))
        #expect(!served.stderr.contains("tally db roles"), "no role warning: \(served.stderr.suffix(800))")
        #expect(try await scalar(db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner <> \(ownerRole)") == 0)

        // The application role: no DDL, no rewriting of the ledger or the audit log; the owner may migrate.
        for statement: PostgresQuery in [
            "CREATE TABLE sneaky (id int)", "ALTER TABLE users ADD COLUMN sneaky int", "DROP TABLE idempotency_keys",
            "UPDATE credit_transactions SET amount = 0", "DELETE FROM credit_transactions", "TRUNCATE credit_transactions",
            "DELETE FROM admin_audit", "CREATE SCHEMA sneaky",
        ] {
            await #expect(throws: PSQLError.self, "\(statement.sql)") {
                try await withSingleConnection(app) { try await $0.execute(statement) }
            }
        }
        #expect(try await scalar(db, "SELECT count(*) FROM pg_roles WHERE rolname = \(appRole) AND NOT rolsuper AND NOT rolcreatedb AND NOT rolcreaterole") == 1)
        try await withSingleConnection(try ConnectionSettings(url: ownerURL)) { try await $0.execute("CREATE TABLE owner_may (id int)") }

        // Serving as the application role without the owner: the schema is checked, not changed, and it serves.
        let plain = try TallyProcess.launch(["serve", "--port", String(port), "--metrics-port", "0", "--database-url", appURL])
        #expect(try await getWhenUp("http://127.0.0.1:\(port)/readyz").0 == 200)
        kill(plain.pid, SIGINT)
        #expect(await TallyProcess.collect(plain).status == 0)

        // As a superuser, the server says what is wrong.
        let root = try TallyProcess.launch(["serve", "--port", String(port), "--metrics-port", "0", "--database-url", db.url()])
        #expect(try await getWhenUp("http://127.0.0.1:\(port)/readyz").0 == 200)
        kill(root.pid, SIGINT)
        let warned = await TallyProcess.collect(root)
        #expect(warned.stderr.contains("a superuser") && warned.stderr.contains("tally db roles"), Comment(rawValue: warned.stderr))

        // Again: nothing breaks, passwords stay.
        let again = try await TallyProcess.run(["db", "roles", "--owner-role", ownerRole, "--app-role", appRole, "--database-url", db.url()])
        #expect(again.status == 0)
        #expect(again.stdout.contains("its password is unchanged"))
        try await withSingleConnection(app) { try await $0.execute("SELECT count(*) FROM users") }
    }

    /// `tally db roles --owners`: one role per app of the manifest, able to do exactly what it says.
    @Test(.freshDatabase) func eachAppsRoleCanDoExactlyWhatTheManifestGives() async throws {
        let db = try TestDatabase.current
        let suffix = UUID().uuidString.prefix(6).lowercased()
        let (nextjs, fastapi) = ("nextjs_\(suffix)", "fastapi_\(suffix)")
        try await withSingleConnection(db) { connection in
            for statement: PostgresQuery in [
                "CREATE TABLE users (id text PRIMARY KEY, email text NOT NULL)", "CREATE TABLE user_credits (id serial PRIMARY KEY, user_id text NOT NULL)",
                "CREATE SCHEMA jobs", "CREATE TABLE jobs.queue (id serial PRIMARY KEY)", "INSERT INTO users VALUES ('u1', 'a@example.com')",
            ] { try await connection.execute(statement) }
        }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tally-roles-\(suffix)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try """
            [apps.nextjs]
            owns = ["public.users", "public.user_credits"]
            role = "\(nextjs)"

            [apps.fastapi]
            owns = ["jobs.*"]
            reads = ["users"]
            writes = ["user_credits"]
            role = "\(fastapi)"
            """.write(toFile: folder + "/tally.toml", atomically: true, encoding: .utf8)
        let roles = try await TallyProcess.run(["db", "roles", "--owners", folder + "/tally.toml", "--database-url", db.url()])
        #expect(roles.status == 0, Comment(rawValue: roles.stdout + roles.stderr))
        func settings(_ role: String) throws -> ConnectionSettings {
            let line = try #require(roles.stdout.split(separator: "\n").first { $0.contains("role \(role):") }, Comment(rawValue: roles.stdout))
            return try ConnectionSettings(url: String(try #require(line.split(separator: " ").last)))
        }
        let (asNext, asFast) = (try settings(nextjs), try settings(fastapi))
        func allowed(_ who: ConnectionSettings, _ statement: PostgresQuery) async -> Bool {
            (try? await withSingleConnection(who) { try await $0.execute(statement) }) != nil
        }
        // The reader and writer: exactly SELECT on users; SELECT, INSERT, UPDATE, DELETE on user_credits; its own schema.
        #expect(await allowed(asFast, "SELECT * FROM users"))
        #expect(await allowed(asFast, "INSERT INTO user_credits (user_id) VALUES ('u1')"), "a writer uses the table's sequence")
        #expect(await allowed(asFast, "UPDATE user_credits SET user_id = 'u1'"))
        #expect(await allowed(asFast, "DELETE FROM user_credits WHERE false"))
        #expect(await allowed(asFast, "CREATE TABLE jobs.more (id int)"))
        for statement: PostgresQuery in [
            "INSERT INTO users VALUES ('u2', 'b@example.com')", "UPDATE users SET email = 'x'", "DELETE FROM users", "TRUNCATE user_credits",
            "ALTER TABLE user_credits ADD COLUMN sneaky int", "ALTER TABLE users ADD COLUMN sneaky int", "DROP TABLE users", "CREATE TABLE public.sneaky (id int)",
        ] {
            #expect(await !allowed(asFast, statement), "fastapi may not: \(statement.sql)")
        }
        // The owner: its tables' DDL, not the other app's schema.
        #expect(await allowed(asNext, "ALTER TABLE users ADD COLUMN name text"))
        #expect(await allowed(asNext, "CREATE TABLE public.teams (id text)"))
        #expect(await !allowed(asNext, "SELECT * FROM jobs.queue"))

        let verified = try await TallyProcess.run(["db", "verify", "--owners", folder + "/tally.toml", "--dir", folder, "--database-url", db.url()])
        #expect(!verified.stdout.contains("grant"), Comment(rawValue: verified.stdout + verified.stderr))
        try await withSingleConnection(db) { try await $0.execute(PostgresQuery(unsafeSQL: "GRANT INSERT ON users TO \(fastapi)")) }
        let drifted = try await TallyProcess.run(["db", "verify", "--owners", folder + "/tally.toml", "--dir", folder, "--database-url", db.url()])
        #expect(drifted.status == 1)
        #expect(drifted.stdout.contains("fastapi (\(fastapi)) holds SELECT, INSERT on public.users; the manifest gives SELECT"), Comment(rawValue: drifted.stdout))

        // Roles are the cluster's: leave none behind.
        try await withSingleConnection(db) { connection in
            for role in [nextjs, fastapi] {
                try await connection.execute(PostgresQuery(unsafeSQL: "DROP OWNED BY \(role) CASCADE"))
                try await connection.execute(PostgresQuery(unsafeSQL: "DROP ROLE \(role)"))
            }
        }
    }
}
