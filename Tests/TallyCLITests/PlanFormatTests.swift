import Foundation
import PostgresNIO
import TallyPostgres
import TallyTestSupport
import Testing

/// `tally migrate plan` for CI: GitHub annotations and SARIF point at each finding's migration file and line,
/// JSON carries the same, and `--max-warnings` turns warnings into a failing exit.
@Suite struct PlanFormatTests {
    /// A folder under the working directory: a filled table, then a migration with a warning on line 3 (an
    /// index built without CONCURRENTLY) and, when `orphans`, a foreign key that rows violate, on line 5.
    func folder(orphans: Bool, ignore: String = "") throws -> (path: String, relative: String) {
        let name = "tally-plan-\(UUID().uuidString.prefix(8))"
        let path = FileManager.default.currentDirectoryPath + "/.build/" + name
        try FileManager.default.createDirectory(atPath: path + "/meta", withIntermediateDirectories: true)
        try """
            CREATE TABLE owners (id int PRIMARY KEY);
            --> statement-breakpoint
            CREATE TABLE pets (id int PRIMARY KEY, owner_id int);
            --> statement-breakpoint
            INSERT INTO owners SELECT generate_series(1, 10);
            --> statement-breakpoint
            INSERT INTO pets SELECT n, n + \(orphans ? 5 : 0) FROM generate_series(1, 10) n;
            """.write(toFile: path + "/0000_tables.sql", atomically: true, encoding: .utf8)
        try """
            -- The index: no CONCURRENTLY.
            \(ignore)
            CREATE INDEX pets_owner_idx ON pets (owner_id);
            --> statement-breakpoint
            ALTER TABLE pets ADD CONSTRAINT pets_owner_fk FOREIGN KEY (owner_id) REFERENCES owners(id);
            """.write(toFile: path + "/0001_index.sql", atomically: true, encoding: .utf8)
        try #"{"version": "7", "dialect": "postgresql", "entries": [{"idx": 0, "version": "7", "when": 1000, "tag": "0000_tables", "breakpoints": true}, {"idx": 1, "version": "7", "when": 1001, "tag": "0001_index", "breakpoints": true}]}"#
            .write(toFile: path + "/meta/_journal.json", atomically: true, encoding: .utf8)
        return (path, ".build/\(name)")
    }

    func planned(_ db: ConnectionSettings, orphans: Bool, ignore: String = "") async throws -> (path: String, relative: String, run: ([String]) async throws -> TallyProcess.Result) {
        let (path, relative) = try folder(orphans: orphans, ignore: ignore)
        let url = db.url()
        let first = try await TallyProcess.run(["migrate", "up", "--to", "0000_tables", "--dir", path, "--no-backup", "--database-url", url])
        #expect(first.status == 0, Comment(rawValue: first.stderr))
        return (path, relative, { try await TallyProcess.run(["migrate", "plan", "--dir", path, "--database-url", url] + $0) })
    }

    /// `--include` turns on squawk's opt-in rules, `--exclude` turns any off (squawk's older timeout rule name
    /// included), and a name no rule has is refused with the list.
    @Test(.freshDatabase) func includeAndExcludeChooseTheRules() async throws {
        let db = try TestDatabase.current
        let (path, _, plan) = try await planned(db, orphans: false)
        defer { try? FileManager.default.removeItem(atPath: path) }
        func rules(_ arguments: [String]) async throws -> Set<String> {
            let result = try await plan(arguments + ["--format", "json"])
            #expect(result.status == 0, Comment(rawValue: result.stderr))
            let json = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
            let migrations = try #require(json["migrations"] as? [[String: Any]])
            return Set(migrations.flatMap { ($0["statements"] as? [[String: Any]] ?? []).flatMap { ($0["findings"] as? [[String: Any]] ?? []).compactMap { $0["rule"] as? String } } })
        }
        let standard = try await rules([])
        #expect(standard.contains("require-concurrent-index-creation") && !standard.contains("ban-new-write-restriction"), "\(standard)")
        let more = try await rules(["--include", "ban-new-write-restriction,require-table-schema"])
        #expect(more.isSuperset(of: standard) && more.contains("ban-new-write-restriction") && more.contains("require-table-schema"), "\(more)")
        let fewer = try await rules(["--exclude", "require-concurrent-index-creation", "--exclude", "require-timeout-settings"])
        #expect(fewer == standard.subtracting(["require-concurrent-index-creation", "require-lock-timeout", "require-statement-timeout"]), "\(fewer)")
        let wrong = try await plan(["--include", "no-such-rule"])
        #expect(wrong.status != 0 && wrong.stderr.contains("--include no-such-rule: no such rule") && wrong.stderr.contains("adding-field-with-default"), Comment(rawValue: wrong.stderr))
    }

    @Test(.freshDatabase) func githubAnnotationsAndSARIFPointAtTheFileAndLine() async throws {
        let db = try TestDatabase.current
        let (path, relative, plan) = try await planned(db, orphans: true)
        defer { try? FileManager.default.removeItem(atPath: path) }

        let github = try await plan(["--format", "github"])
        #expect(github.status == 1, "rows violate the key: blocked")
        let lines = github.stdout.split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.hasPrefix("::warning file=\(relative)/0001_index.sql,line=3,title=tally require-concurrent-index-creation::") }, "\(lines)")
        let orphanLine = try #require(lines.first { $0.hasPrefix("::error file=\(relative)/0001_index.sql,line=5,title=tally foreign-key-orphans::") }, "\(lines)")
        #expect(orphanLine.contains("5 row(s) of"))
        #expect(lines.allSatisfy { $0.hasPrefix("::") && !$0.contains("\n") }, "one workflow command per line")
        #expect(github.stderr.contains("Blocked"))

        let sarif = try await plan(["--format", "sarif"])
        #expect(sarif.status == 1)
        let log = try #require(try JSONSerialization.jsonObject(with: Data(sarif.stdout.utf8)) as? [String: Any], Comment(rawValue: sarif.stdout))
        #expect(log["version"] as? String == "2.1.0")
        let run = try #require((log["runs"] as? [[String: Any]])?.first)
        #expect(((run["tool"] as? [String: Any])?["driver"] as? [String: Any])?["name"] as? String == "tally")
        let results = try #require(run["results"] as? [[String: Any]])
        let where_: [(String?, String?, String?, Int?)] = results.map { result in
            let location = ((result["locations"] as? [[String: Any]])?.first?["physicalLocation"]) as? [String: Any]
            return (result["ruleId"] as? String, result["level"] as? String,
                    (location?["artifactLocation"] as? [String: Any])?["uri"] as? String,
                    (location?["region"] as? [String: Any])?["startLine"] as? Int)
        }
        #expect(where_.contains { $0 == ("require-concurrent-index-creation", "warning", "\(relative)/0001_index.sql", 3) }, "\(where_)")
        #expect(where_.contains { $0 == ("foreign-key-orphans", "error", "\(relative)/0001_index.sql", 5) }, "\(where_)")
        let rules = (((run["tool"] as? [String: Any])?["driver"] as? [String: Any])?["rules"] as? [[String: Any]])?.compactMap { $0["id"] as? String } ?? []
        #expect(Set(rules) == Set(where_.compactMap(\.0)), "every result's rule is described")

        let json = try await plan(["--format", "json"])
        let document = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let migration = try #require((document["migrations"] as? [[String: Any]])?.first)
        #expect((migration["file"] as? String)?.hasSuffix("/0001_index.sql") == true)
        // The same document (but the orphan scan's time, which varies from run to run).
        func withoutTimes(_ text: String) -> String { text.split(separator: "\n").filter { !$0.contains("\"seconds\"") }.joined(separator: "\n") }
        #expect(withoutTimes(try await plan(["--json"]).stdout) == withoutTimes(json.stdout), "--json is --format json")
    }

    @Test(.freshDatabase) func maxWarningsTurnsWarningsIntoAFailure() async throws {
        let db = try TestDatabase.current
        let (path, _, plan) = try await planned(db, orphans: false)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let text = try await plan([])
        #expect(text.status == 0, Comment(rawValue: text.stdout + text.stderr))
        #expect(text.stdout.contains("warning  require-concurrent-index-creation"))
        let within = try await plan(["--max-warnings", "5"])
        #expect(within.status == 0)
        let over = try await plan(["--max-warnings", "0", "--format", "github"])
        #expect(over.status == 1)
        #expect(over.stderr.contains("more than --max-warnings 0"))
        let bad = try await plan(["--max-warnings=-1"])
        #expect(bad.status != 0 && bad.stderr.contains("--max-warnings must be 0 or more"))
        let unknown = try await plan(["--format", "xml"])
        #expect(unknown.status != 0 && unknown.stderr.contains("xml"))
    }

    @Test(.freshDatabase, arguments: ["-- tally:ignore require-concurrent-index-creation", "-- squawk-ignore require-concurrent-index-creation, ban-drop-column"])
    func aCommentBeforeAStatementSilencesARuleAndTheSummarySaysSo(_ comment: String) async throws {
        let db = try TestDatabase.current
        let (path, _, plan) = try await planned(db, orphans: false, ignore: comment)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let text = try await plan(["--max-warnings", "0"])
        #expect(text.status == 0, "the one warning is silenced: \(text.stdout)\(text.stderr)")
        #expect(text.stdout.contains("silenced  require-concurrent-index-creation (warning)"))
        #expect(text.stdout.contains("Silenced by comments (1): require-concurrent-index-creation at \(path)/0001_index.sql:3"), Comment(rawValue: text.stdout))
        let github = try await plan(["--format", "github"])
        #expect(!github.stdout.contains("require-concurrent-index-creation"), "no annotation for a silenced finding")
        #expect(github.stderr.contains("Silenced by comments (1)"))
    }

    @Test(.freshDatabase) func scratchPlansTheRestWithoutTouchingTheLiveDatabase() async throws {
        let db = try TestDatabase.current
        let (path, relative) = try folder(orphans: false)
        defer { try? FileManager.default.removeItem(atPath: path) }
        // Other tests make scratch databases too: this one's is named in what the command says.
        func exists(_ database: String) async throws -> Bool {
            try await withPostgresClient(db) { client in
                for try await _ in try await client.query("SELECT 1 FROM pg_database WHERE datname = \(database)") { return true }
                return false
            }
        }
        let plan = try await TallyProcess.run([
            "migrate", "plan", "--dir", path, "--database-url", db.url(), "--scratch", "--applied-through", "0000_tables", "--format", "github",
        ])
        #expect(plan.status == 0, Comment(rawValue: plan.stdout + plan.stderr))
        #expect(plan.stdout.contains("::warning file=\(relative)/0001_index.sql,line=3,title=tally require-concurrent-index-creation::"), Comment(rawValue: plan.stdout))
        #expect(!plan.stdout.contains("0000_tables"), "what is applied is not planned")
        #expect(plan.stderr.contains("Applying the migrations through 0000_tables to a scratch database"))
        let scratch = try #require(plan.stderr.firstMatch(of: /scratch database \((tally_plan_[0-9a-f]+)\)/).map { String($0.1) }, Comment(rawValue: plan.stderr))
        let live = try await withPostgresClient(db) { client in
            var tables: [String] = []
            for try await name in try await client.query("SELECT tablename::text FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')").decode(String.self) { tables.append(name) }
            return tables
        }
        #expect(live.isEmpty, "the live database is untouched: \(live)")
        #expect(try await !exists(scratch), "the scratch database \(scratch) is dropped")

        let unknown = try await TallyProcess.run(["migrate", "plan", "--dir", path, "--database-url", db.url(), "--scratch", "--applied-through", "0042_nope"])
        #expect(unknown.status != 0 && unknown.stderr.contains("0042_nope"), Comment(rawValue: unknown.stderr))
        #expect(!unknown.stderr.contains("scratch database ("), "an unknown tag is refused before any database is made")
        let alone = try await TallyProcess.run(["migrate", "plan", "--dir", path, "--database-url", db.url(), "--applied-through", "0000_tables"])
        #expect(alone.status != 0 && alone.stderr.contains("--applied-through goes with --scratch"))
    }
}

/// `examples/ci/`: the workflow runs `check-migrations.sh`, and so does this test, with the built `tally`.
@Suite struct CIExampleTests {
    @Test(.freshDatabase) func theWorkflowsChecksPassACleanPullRequestAndFailABlockedOne() async throws {
        let db = try TestDatabase.current
        let script = TestDatabase.packageRoot.appendingPathComponent("examples/ci/check-migrations.sh").path
        let workflow = try String(contentsOfFile: TestDatabase.packageRoot.appendingPathComponent("examples/ci/migrations.yml").path, encoding: .utf8)
        #expect(workflow.contains(#"check-migrations.sh "$MIGRATIONS" "$APPLIED""#), "the workflow runs the script this test runs")
        for orphans in [false, true] {
            let (path, relative) = try PlanFormatTests().folder(orphans: orphans)
            defer { try? FileManager.default.removeItem(atPath: path) }
            // The base branch has 0000_tables; the pull request adds 0001_index.
            let run = try await Command.run(
                "/bin/bash", [script, path, "0000_tables"],
                environment: ["TALLY": TallyProcess.executable, "DATABASE_URL": db.url()])
            #expect(run.output.contains("::warning file=\(relative)/0001_index.sql,line=3,title=tally require-concurrent-index-creation::"), Comment(rawValue: run.output))
            if orphans {
                #expect(run.status != 0, "rows a new foreign key would reject fail the check")
                #expect(run.output.contains("::error file=\(relative)/0001_index.sql,line=5,title=tally foreign-key-orphans::"), Comment(rawValue: run.output))
            } else {
                #expect(run.status == 0, Comment(rawValue: run.output))
            }
        }
    }
}
