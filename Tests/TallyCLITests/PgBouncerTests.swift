import Foundation
import PostgresNIO
import TallyPostgres
import TallyTestSupport
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Tally behind a real PgBouncer in transaction pooling mode, where each statement outside a transaction may
/// run on another server connection and named prepared statements are not carried over (PgBouncer 1.18).
@Suite struct PgBouncerTests {
    /// Runs `body` with a fresh database behind its own PgBouncer.
    func behindPgBouncer(poolSize: Int = 10, _ body: (ConnectionSettings, ConnectionSettings) async throws -> Void) async throws {
        let db = try TestDatabase.current
        let bouncer = try await PgBouncer(in: db, poolSize: poolSize)
        do {
            try await body(db, bouncer.settings)
        } catch {
            await bouncer.stop()
            throw error
        }
        await bouncer.stop()
    }

    @Test(.freshDatabase) func threeRunnersAtOnceApplyANonIdempotentMigrationExactlyOnce() async throws {
        try await behindPgBouncer { db, pooled in
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tally-pgb-\(UUID().uuidString.prefix(8))").path
            try FileManager.default.createDirectory(atPath: folder + "/meta", withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: folder) }
            // Applied twice, it would insert two rows.
            try """
                CREATE TABLE IF NOT EXISTS runs (n int);
                --> statement-breakpoint
                SELECT pg_sleep(2);
                --> statement-breakpoint
                INSERT INTO runs VALUES (1);
                """.write(toFile: folder + "/0000_once.sql", atomically: true, encoding: .utf8)
            try #"{"version": "7", "dialect": "postgresql", "entries": [{"idx": 0, "version": "7", "when": 1000, "tag": "0000_once", "breakpoints": true}]}"#
                .write(toFile: folder + "/meta/_journal.json", atomically: true, encoding: .utf8)

            let args = ["migrate", "up", "--dir", folder, "--no-backup", "--database-url", pooled.url()]
            let started = ContinuousClock.now
            let runners = try (0..<3).map { _ in try TallyProcess.launch(args) }
            var results: [TallyProcess.Result] = []
            for runner in runners { results.append(await TallyProcess.collect(runner)) }
            let took = ContinuousClock.now - started
            for result in results { #expect(result.status == 0, Comment(rawValue: result.stderr)) }
            #expect(results.filter { $0.stdout.contains("Applied 1") }.count == 1, "\(results.map(\.stdout))")
            #expect(results.filter { $0.stdout.contains("Nothing to apply") }.count == 2)
            #expect(took < .seconds(60), "no runner waited past the one that applied (\(took))")
            #expect(try await scalar(db, "SELECT count(*)::int FROM runs") == 1, "the migration ran exactly once")
            #expect(try await scalar(db, "SELECT count(*)::int FROM drizzle.__drizzle_migrations") == 1)
            #expect(try await scalar(db, "SELECT count(*)::int FROM tally_migrate.runner_leases") == 0, "no lease is left")
            #expect(try await scalar(db, "SELECT count(*)::int FROM tally_migrate.failures") == 0)
            #expect(try await scalar(db, """
                SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                """) == 0, "no advisory lock is left on a pooled connection")
        }
    }

    @Test(.freshDatabase) func threeServersStartedTogetherWithMigrateAllServe() async throws {
        try await behindPgBouncer { db, pooled in
            let ports = try (0..<3).map { _ in try LocalCluster.freePort() }
            let servers = try ports.map { port in
                try TallyProcess.launch(["serve", "--migrate", "--port", String(port), "--metrics-port", "0", "--database-url", pooled.url()])
            }
            var statuses: [Int] = []
            for port in ports {
                statuses.append((try? await getWhenUp("http://127.0.0.1:\(port)/readyz").0) ?? 0)
            }
            for server in servers { kill(server.pid, SIGINT) }
            var results: [TallyProcess.Result] = []
            for server in servers { results.append(await TallyProcess.collect(server)) }
            #expect(statuses == [200, 200, 200], "every replica serves: \(statuses)\n\(results.map(\.stderr).joined(separator: "\n---\n"))")
            for result in results { #expect(result.status == 0, Comment(rawValue: result.stderr)) }
            #expect(try await scalar(db, "SELECT count(*)::int FROM drizzle.__drizzle_migrations") == MigrateCommandTests.ownTags.count, "each migration once")
            #expect(try await scalar(db, "SELECT count(*)::int FROM tally_migrate.runner_leases") == 0)
        }
    }

    @Test(.freshDatabase) func theOperatorCommandsWorkThroughThePooler() async throws {
        try await behindPgBouncer { db, pooled in
            // Tally's own schema and the database commands.
            let url = pooled.url()
            let tally = try await TallyProcess.run(["migrate", "up", "--no-backup", "--database-url", url])
            #expect(tally.status == 0, Comment(rawValue: tally.stderr))
            for command in [["db", "verify"], ["db", "orphans"], ["db", "audit"], ["migrate", "status"], ["migrate", "validate"], ["migrate", "plan"]] {
                let result = try await TallyProcess.run(command + ["--database-url", url])
                #expect(result.status == 0, "\(command.joined(separator: " ")): \(result.stdout)\(result.stderr)")
                if command == ["db", "verify"] {
                    // Tally's own schema has nothing to find either (an unindexed foreign key, a redundant one, …).
                    #expect(!(result.stdout + result.stderr).contains("Findings"), "\(result.stdout)\(result.stderr)")
                }
            }

            // In a database of its own (through the same pooler): a table with rows, then a migration that adds
            // a foreign key to it, which takes the online path (NOT VALID, orphans counted, VALIDATE in its own
            // transaction).
            let other = db.database + "_fk"
            try await withSingleConnection(db) { try await $0.execute("CREATE DATABASE \(unescaped: other)") }
            do {
                try await onlineForeignKey(db, pooled, other)
            } catch {
                try? await withSingleConnection(db) { try await $0.execute("DROP DATABASE IF EXISTS \(unescaped: other) WITH (FORCE)") }
                throw error
            }
            try await withSingleConnection(db) { try await $0.execute("DROP DATABASE IF EXISTS \(unescaped: other) WITH (FORCE)") }
        }
    }

    /// A migration that adds a foreign key to a filled table, applied through the pooler into database `other`.
    func onlineForeignKey(_ db: ConnectionSettings, _ pooled: ConnectionSettings, _ other: String) async throws {
        let fkURL = pooled.with(database: other).url()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tally-pgb-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: folder + "/meta", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let migrations = [
            ("0000_tables", "CREATE TABLE owners (id int PRIMARY KEY);\n--> statement-breakpoint\nCREATE TABLE pets (id int PRIMARY KEY, owner_id int);\n--> statement-breakpoint\nINSERT INTO owners SELECT generate_series(1, 100);\n--> statement-breakpoint\nINSERT INTO pets SELECT n, n FROM generate_series(1, 100) n;"),
            ("0001_fk", "ALTER TABLE pets ADD CONSTRAINT pets_owner_id_fk FOREIGN KEY (owner_id) REFERENCES owners(id);"),
        ]
        var entries: [String] = []
        for (i, (tag, sql)) in migrations.enumerated() {
            try sql.write(toFile: "\(folder)/\(tag).sql", atomically: true, encoding: .utf8)
            entries.append(#"{"idx": \#(i), "version": "7", "when": \#(1000 + i), "tag": "\#(tag)", "breakpoints": true}"#)
        }
        try #"{"version": "7", "dialect": "postgresql", "entries": [\#(entries.joined(separator: ","))]}"#
            .write(toFile: folder + "/meta/_journal.json", atomically: true, encoding: .utf8)
        let first = try await TallyProcess.run(["migrate", "up", "--to", "0000_tables", "--dir", folder, "--no-backup", "--database-url", fkURL])
        #expect(first.status == 0, Comment(rawValue: first.stderr))
        let plan = try await TallyProcess.run(["migrate", "plan", "--dir", folder, "--database-url", fkURL])
        #expect(plan.status == 0, Comment(rawValue: plan.stdout + plan.stderr))
        #expect(plan.stdout.contains("0001_fk"))
        let up = try await TallyProcess.run(["migrate", "up", "--dir", folder, "--no-backup", "--database-url", fkURL])
        #expect(up.status == 0, Comment(rawValue: up.stderr))
        #expect((up.stdout + up.stderr).contains("NOT VALID"), Comment(rawValue: up.stdout + up.stderr))
        #expect(try await scalar(db.with(database: other), "SELECT count(*)::int FROM pg_constraint WHERE conname = 'pets_owner_id_fk' AND convalidated") == 1)
        let status = try await TallyProcess.run(["migrate", "status", "--dir", folder, "--database-url", fkURL])
        #expect(status.status == 0, Comment(rawValue: status.stderr))
        let orphans = try await TallyProcess.run(["db", "orphans", "--database-url", fkURL])
        #expect(orphans.status == 0, Comment(rawValue: orphans.stdout + orphans.stderr))
        #expect(try await scalar(db.with(database: other), "SELECT count(*)::int FROM tally_migrate.runner_leases") == 0)
    }

    @Test(.freshDatabase) func serveUnderASpendLoadAnswersNo5xx() async throws {
        try await behindPgBouncer(poolSize: 5) { db, pooled in
            let url = pooled.url()
            #expect(try await TallyProcess.run(["migrate", "up", "--no-backup", "--database-url", url]).status == 0)
            #expect(try await TallyProcess.run(["users", "create", "--email", "load@example.com", "--password", "load-password-1", "--database-url", url]).status == 0)
            #expect(try await TallyProcess.run(["credits", "grant", "--user", "load@example.com", "--amount", "1000000", "--database-url", url]).status == 0)
            let made = try await TallyProcess.run(["keys", "create", "--user", "load@example.com", "--database-url", url])
            let key = try #require(made.stdout.split(separator: "\n").last.map(String.init), Comment(rawValue: made.stderr))
            #expect(key.hasPrefix("tly_"))

            // Prepared statements are on (the default): the server must notice the pooler loses them and go on.
            let port = try LocalCluster.freePort()
            let server = try TallyProcess.launch(["serve", "--port", String(port), "--metrics-port", "0", "--database-url", url])
            #expect(try await getWhenUp("http://127.0.0.1:\(port)/readyz").0 == 200)
            let session = URLSession(configuration: .ephemeral)
            let statuses = try await withThrowingTaskGroup(of: [Int].self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        var seen: [Int] = []
                        for _ in 0..<25 {
                            var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/v1/credits/consume")!)
                            request.httpMethod = "POST"
                            request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization")
                            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
                            request.httpBody = Data(#"{"amount": 3}"#.utf8)
                            let (_, response) = try await session.data(for: request)
                            seen.append((response as? HTTPURLResponse)?.statusCode ?? 0)
                            var read = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/v1/credits/balance")!)
                            read.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization")
                            seen.append(((try await session.data(for: read)).1 as? HTTPURLResponse)?.statusCode ?? 0)
                        }
                        return seen
                    }
                }
                var all: [Int] = []
                for try await part in group { all += part }
                return all
            }
            kill(server.pid, SIGINT)
            let served = await TallyProcess.collect(server)
            #expect(statuses.count == 400)
            #expect(statuses.allSatisfy { $0 == 200 }, "every spend and read answered 200: \(Dictionary(grouping: statuses, by: { $0 }).mapValues(\.count))\n\(served.stderr.suffix(3000))")
            #expect(try await scalar(db, "SELECT count(*)::int FROM credit_transactions WHERE kind = 'consume'") == 200)
            #expect(try await scalar(db, "SELECT (1000000 - balance)::int FROM user_credits") == 600)
            let audit = try await TallyProcess.run(["db", "audit", "--database-url", url])
            #expect(audit.status == 0, Comment(rawValue: audit.stdout + audit.stderr))
        }
    }
}
