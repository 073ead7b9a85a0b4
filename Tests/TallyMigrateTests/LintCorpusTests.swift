import Foundation
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyMigrate

/// Tally's lint against squawk (PyPI's squawk-cli, `scripts/squawk.sh`) on `Tests/LintCorpus`: one hazard
/// per file, planned against a database where the tables exist and hold rows, where they exist empty, and
/// with the tables created in the same migration.
@Suite struct LintCorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("LintCorpus")
    static let repository = corpus.deletingLastPathComponent().deletingLastPathComponent()

    /// Where squawk reports a lock rule Tally does not, and why that is right. Anything else fails the test.
    static let squawkOnly: [String: String] = [
        // PRIMARY KEY and UNIQUE cannot be NOT VALID; Tally reports them under their own rules.
        "0004_add_primary_key/constraint-missing-not-valid": "a PRIMARY KEY cannot be added NOT VALID (adding-serial-primary-key-field says what to do)",
        "0010_add_unique_constraint/constraint-missing-not-valid": "a UNIQUE constraint cannot be added NOT VALID (disallowed-unique-constraint says what to do)",
    ]

    /// A finding as squawk and Tally both name it: squawk's report may name rules Tally does not know.
    struct Finding: Hashable {
        var file: String
        var rule: String
        init(file: String, rule: String) { (self.file, self.rule) = (file, rule) }
        init(file: String, rule: LintRule.Name) { self.init(file: file, rule: rule.rawValue) }
        var name: LintRule.Name? { .init(rawValue: rule) }
    }

    static func files(_ folder: URL) throws -> [URL] {
        try FileManager.default.contentsOfDirectory(at: folder, includingPropertiesForKeys: nil).filter { $0.pathExtension == "sql" }.sorted { $0.path < $1.path }
    }

    /// squawk's findings on the files, as it runs in CI (each file assumed to run in a transaction, as Drizzle and Tally run them).
    static func squawk(_ files: [URL]) async throws -> Set<Finding> {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("tally-squawk-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: output) }
        let script = repository.appendingPathComponent("scripts/squawk.sh").path
        let result = try await Command.run(
            "/bin/bash", ["-c", "\"$0\" --reporter json --assume-in-transaction \"$@\" > \(output)", script] + files.map(\.path))
        // squawk exits 1 when it finds something: what matters is its report.
        #expect(result.status == 0 || result.status == 1, "squawk: \(result.output)")
        let data = try #require(FileManager.default.contents(atPath: output), "squawk wrote no report: \(result.output)")
        let report = try #require(try JSONSerialization.jsonObject(with: data) as? [[String: Any]], "squawk's report: \(String(decoding: data, as: UTF8.self))")
        return Set(report.compactMap { item in
            guard let file = item["file"] as? String, let rule = item["rule_name"] as? String else { return nil }
            return Finding(file: URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent, rule: rule)
        })
    }

    static func tally(_ folder: URL, _ db: ConnectionSettings) async throws -> (Set<Finding>, Plan) {
        var options = Migrator.Options()
        options.lintRules = LintRules.defaultSet
        let plan = try await Migrator(folder: try MigrationFolder(path: folder.path), database: db, options: options).plan()
        var found: Set<Finding> = []
        for migration in plan.migrations {
            for finding in migration.statements.flatMap(\.findings) { found.insert(Finding(file: migration.tag, rule: finding.rule)) }
        }
        return (found, plan)
    }

    static func isLockRule(_ rule: String) -> Bool { LintRules.named(rule)?.kind == .lock }
    static func isLockRule(_ rule: LintRule.Name) -> Bool { LintRules.named(rule)?.kind == .lock }

    /// squawk's findings on the corpus's hazards, run once for the tests that compare with them.
    static let squawkOnHazards = Task { try await squawk(try files(corpus.appendingPathComponent("hazards"))) }

    @Test(.freshDatabase) func onFilledTablesTallyFindsEveryLockScanAndRewriteSquawkFinds() async throws {
        let db = try TestDatabase.current
        try await execute(db, try String(contentsOf: Self.corpus.appendingPathComponent("schema.sql"), encoding: .utf8))
        try await execute(db, try String(contentsOf: Self.corpus.appendingPathComponent("rows.sql"), encoding: .utf8))
        let hazards = Self.corpus.appendingPathComponent("hazards")
        let squawk = try await Self.squawkOnHazards.value
        let (tally, plan) = try await Self.tally(hazards, db)

        let squawkLocks = squawk.filter { Self.isLockRule($0.rule) }
        #expect(squawkLocks.count >= 15, "the corpus gives squawk lock findings to compare: \(squawkLocks)")
        for finding in squawkLocks.sorted(by: { ($0.file, $0.rule) < ($1.file, $1.rule) }) where Self.squawkOnly["\(finding.file)/\(finding.rule)"] == nil {
            #expect(tally.contains(finding), "squawk finds \(finding.rule) in \(finding.file); Tally does not")
        }
        for key in Self.squawkOnly.keys {
            let parts = key.split(separator: "/").map(String.init)
            #expect(squawk.contains(Finding(file: parts[0], rule: parts[1])), "the exception \(key) is still one squawk makes")
        }
        // Every rule squawk reports is one Tally's catalogue lists, under the same name.
        for rule in Set(squawk.map(\.rule)) { #expect(LintRules.named(rule)?.squawk == true, "squawk's \(rule) is not in LintRules") }
        // Lock findings on filled tables say how many rows and what the lock blocks.
        let lockFindings = plan.migrations.flatMap { $0.statements.flatMap(\.findings) }.filter { Self.isLockRule($0.rule) }
        #expect(lockFindings.count >= squawkLocks.count - Self.squawkOnly.count)
        for finding in lockFindings where finding.severity == .warning {
            #expect(finding.rows ?? 0 > 0 && finding.table != nil, "\(finding.rule): \(finding.message)")
            #expect(finding.message.contains("rows)") && finding.message.contains("waits"), "\(finding.rule): \(finding.message)")
        }
        // Inside DO blocks too, where squawk does not look.
        #expect(tally.contains(Finding(file: "0017_index_inside_do_block", rule: .requireConcurrentIndexCreation)))
        #expect(!squawk.contains(Finding(file: "0017_index_inside_do_block", rule: .requireConcurrentIndexCreation)))
        // What the live database tells: widening a varchar is catalog-only.
        let widen = plan.migrations.first { $0.tag == "0038_widen_varchar" }?.statements.flatMap(\.findings).first { $0.rule == .changingColumnType }
        #expect(widen?.severity == .info && widen?.message.contains("catalog-only") == true, "\(String(describing: widen))")
        #expect(plan.errors > 0, "adding-required-field, transaction-nesting and others are errors")

        let onlySquawk = squawk.subtracting(tally).map { "\($0.file): \($0.rule)" }.sorted()
        let onlyTally = tally.subtracting(squawk).map { "\($0.file): \($0.rule)" }.sorted()
        print("squawk only (\(onlySquawk.count)):\n  " + onlySquawk.joined(separator: "\n  "))
        print("Tally only (\(onlyTally.count)):\n  " + onlyTally.joined(separator: "\n  "))
    }

    @Test(.freshDatabase) func onTablesTheMigrationCreatesTallyIsQuietWhereSquawkIsNot() async throws {
        let db = try TestDatabase.current
        // Each hazard after the schema's statements, in the same migration: every table is new.
        let schema = try String(contentsOf: Self.corpus.appendingPathComponent("schema.sql"), encoding: .utf8)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tally-lint-new-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        for file in try Self.files(Self.corpus.appendingPathComponent("hazards")) {
            let hazard = try String(contentsOf: file, encoding: .utf8)
            try (schema + "\n" + hazard).write(to: folder.appendingPathComponent(file.lastPathComponent), atomically: true, encoding: .utf8)
        }
        let squawk = try await Self.squawk(try Self.files(folder))
        let (tally, plan) = try await Self.tally(folder, db)
        let squawkLocks = squawk.filter { Self.isLockRule($0.rule) }
        #expect(squawkLocks.count >= 5, "squawk reads each file alone and warns about locks on tables nobody uses yet: \(squawkLocks)")
        let tallyLocks = tally.filter { Self.isLockRule($0.rule) || $0.name == .requireLockTimeout || $0.name == .requireStatementTimeout }
        #expect(tallyLocks.isEmpty, "Tally knows the tables are new: \(tallyLocks)")
        // Nor does it warn about breaking code that uses a table nobody uses yet.
        let compatibility = tally.filter { LintRules.named($0.rule)?.kind == .compatibility && !["ban-create-domain-with-constraint", "require-enum-value-ordering"].contains($0.rule) }
        #expect(compatibility.isEmpty, "\(compatibility)")
        // What does not depend on the tables still shows: a BEGIN in the file, a name too long.
        #expect(tally.contains(Finding(file: "0025_explicit_transaction", rule: .transactionNesting)))
        #expect(tally.contains(Finding(file: "0037_long_identifier", rule: .identifierTooLong)))
        #expect(plan.migrations.count == 40)
    }

    /// `--scratch` (CI without production access): the schema is rebuilt empty, so an empty table stands for a
    /// filled one of unknown size, and the lock findings are made as on the filled database.
    @Test(.freshDatabase) func inAScratchDatabaseEmptyTablesCountAsFilled() async throws {
        let db = try TestDatabase.current
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tally-lint-scratch-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.copyItem(at: Self.corpus.appendingPathComponent("schema.sql"), to: folder.appendingPathComponent("0000_schema.sql"))
        let hazards = try Self.files(Self.corpus.appendingPathComponent("hazards"))
        for file in hazards { try FileManager.default.copyItem(at: file, to: folder.appendingPathComponent(file.lastPathComponent)) }
        let plan = try await Migrator(folder: try MigrationFolder(path: folder.path), database: db).planInScratchDatabase(appliedThrough: "0000_schema")
        #expect(plan.migrations.count == hazards.count)
        let found = Set(plan.migrations.flatMap { migration in migration.statements.flatMap(\.findings).map { Finding(file: migration.tag, rule: $0.rule) } })
        let squawkLocks = try await Self.squawkOnHazards.value.filter { Self.isLockRule($0.rule) && Self.squawkOnly["\($0.file)/\($0.rule)"] == nil }
        #expect(squawkLocks.count >= 15)
        let missing = squawkLocks.subtracting(found).map { "\($0.file): \($0.rule)" }.sorted()
        #expect(missing.isEmpty, "scratch: squawk finds these; Tally does not: \(missing)")
        let index = plan.migrations.first { $0.tag == "0007_create_index" }?.statements.first?.findings.first { $0.rule == .requireConcurrentIndexCreation }
        #expect(index?.message.contains("rows unknown: planned in a scratch database") == true && index?.rows == nil, "\(String(describing: index))")
    }

    @Test(.freshDatabase) func onEmptyTablesTallyDoesNotWarnAboutLocks() async throws {
        let db = try TestDatabase.current
        try await execute(db, try String(contentsOf: Self.corpus.appendingPathComponent("schema.sql"), encoding: .utf8))
        let (tally, _) = try await Self.tally(Self.corpus.appendingPathComponent("hazards"), db)
        let locks = tally.filter { Self.isLockRule($0.rule) || $0.name == .addingRequiredField }
        #expect(locks.isEmpty, "the tables hold no rows: nothing to scan, rewrite or wait for: \(locks)")
        // The tables are live, so changes that break code using them still show.
        #expect(tally.contains(Finding(file: "0019_drop_column", rule: .banDropColumn)))
        #expect(tally.contains(Finding(file: "0021_rename_column", rule: .renamingColumn)))
    }

    /// Every rule the catalogue calls implemented fires on the corpus (hazards/ and compatibility/, filled
    /// tables, every rule on).
    @Test(.freshDatabase) func everyImplementedRuleFiresOnTheCorpus() async throws {
        let db = try TestDatabase.current
        try await execute(db, try String(contentsOf: Self.corpus.appendingPathComponent("schema.sql"), encoding: .utf8))
        try await execute(db, try String(contentsOf: Self.corpus.appendingPathComponent("rows.sql"), encoding: .utf8))
        var options = Migrator.Options()
        options.lintRules = Set(LintRules.all.filter(\.applies).map(\.name))
        var fired: Set<LintRule.Name> = []
        for folder in ["hazards", "compatibility"] {
            let path = Self.corpus.appendingPathComponent(folder).path
            let plan = try await Migrator(folder: try MigrationFolder(path: path), database: db, options: options).plan()
            for finding in plan.migrations.flatMap({ $0.statements.flatMap(\.findings) }) {
                fired.insert(finding.rule)
            }
        }
        // These two need an ownership manifest (`--ownership`): OwnershipTests make each fire.
        let withManifest: Set<LintRule.Name> = [.foreignDDL, .breaksOtherApp]
        #expect(fired.isDisjoint(with: withManifest), "without a manifest: \(fired.intersection(withManifest))")
        let silent = LintRules.all.filter { $0.applies && !fired.contains($0.name) && !withManifest.contains($0.name) }.map(\.name)
        #expect(silent.isEmpty, "implemented rules that never fired: \(silent)")
        let notApplicable = LintRules.all.filter { !$0.applies && fired.contains($0.name) }.map(\.name)
        #expect(notApplicable.isEmpty, "\(notApplicable)")
    }

    /// What only the live database can tell: a validated CHECK makes SET NOT NULL scan-free, a stable default
    /// (now()) does not rewrite while a volatile one (clock_timestamp()) does, and a domain used only by empty
    /// tables scans nothing.
    @Test(.freshDatabase) func theLiveDatabaseDecides() async throws {
        let db = try TestDatabase.current
        try await execute(db, """
            CREATE DOMAIN code AS text;
            CREATE TABLE proven (id bigint, name text, CONSTRAINT proven_name_not_null CHECK (name IS NOT NULL));
            CREATE TABLE unproven (id bigint, name text, tag code);
            CREATE TABLE empty_with_domain (tag code);
            INSERT INTO proven SELECT g, 'n' FROM generate_series(1, 20) g;
            INSERT INTO unproven SELECT g, 'n', 'c' FROM generate_series(1, 20) g;
            """)
        let folder = try DrizzleFolder([("0000_changes", 1, """
            ALTER TABLE proven ALTER COLUMN name SET NOT NULL;
            --> statement-breakpoint
            ALTER TABLE unproven ALTER COLUMN name SET NOT NULL;
            --> statement-breakpoint
            ALTER TABLE proven ADD COLUMN seen_at timestamptz DEFAULT now();
            --> statement-breakpoint
            ALTER TABLE proven ADD COLUMN stamped_at timestamptz DEFAULT clock_timestamp();
            --> statement-breakpoint
            ALTER DOMAIN code ADD CONSTRAINT code_short CHECK (length(VALUE) < 10);
            """)])
        defer { folder.remove() }
        let plan = try await Migrator(folder: try MigrationFolder(path: folder.path), database: db).plan()
        let rules = try #require(plan.migrations.first?.statements).map { Set($0.findings.map(\.rule)) }
        #expect(!rules[0].contains(.addingNotNullableField), "a validated CHECK proves it: \(rules[0])")
        #expect(rules[1].contains(.addingNotNullableField))
        #expect(!rules[2].contains(.addingFieldWithDefault), "now() is stable: no rewrite")
        #expect(rules[3].contains(.addingFieldWithDefault), "clock_timestamp() is volatile: a rewrite")
        let domain = plan.migrations[0].statements[4].findings.first { $0.rule == .banAlterDomainWithAddConstraint }
        #expect(domain?.message.contains("unproven (20 rows)") == true && domain?.message.contains("empty_with_domain") == false, "\(String(describing: domain))")
    }

    /// A table counts as new from the statement that creates it on, not before: the same index warns before a
    /// migration recreates its table and not after.
    @Test(.freshDatabase) func aTableIsNewFromItsCreateStatementOn() async throws {
        let db = try TestDatabase.current
        try await execute(db, "CREATE TABLE events (id bigint, at timestamptz); INSERT INTO events SELECT g, now() FROM generate_series(1, 50) g")
        let folder = try DrizzleFolder([("0000_rebuild", 1, """
            CREATE INDEX events_at_idx ON events (at);
            --> statement-breakpoint
            ALTER TABLE events RENAME TO events_old;
            --> statement-breakpoint
            CREATE TABLE events (id bigint, at timestamptz);
            --> statement-breakpoint
            CREATE INDEX events_id_idx ON events (id);
            """)])
        defer { folder.remove() }
        let plan = try await Migrator(folder: try MigrationFolder(path: folder.path), database: db).plan()
        let statements = try #require(plan.migrations.first?.statements)
        let before = statements[0].findings.first { $0.rule == .requireConcurrentIndexCreation }
        #expect(before?.rows == 50 && before?.message.contains("events (50 rows)") == true, "\(String(describing: before))")
        #expect(statements[3].findings.filter { Self.isLockRule($0.rule) }.isEmpty, "the index on the new table: \(statements[3].findings)")
    }

    /// The README's rule table is the catalogue: each rule once, with its kind, default and whether Tally implements it.
    @Test func theReadmeListsEveryRuleAsTheCatalogueHasIt() throws {
        let readme = try String(contentsOf: Self.repository.appendingPathComponent("README.md"), encoding: .utf8)
        let section = try #require(readme.components(separatedBy: "### Lint rules").dropFirst().first)
        let table = section.split(separator: "\n").drop { !$0.hasPrefix("| Rule") }.prefix { $0.hasPrefix("|") }
        let rows = table.filter { $0.hasPrefix("| `") }.map { $0.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) } }
        #expect(rows.count == LintRules.all.count, "one row per rule")
        for rule in LintRules.all {
            let row = try #require(rows.first { $0[0].hasPrefix("`\(rule.name)`") }, "\(rule.name) is in the README's table")
            #expect(row[1] == rule.kind.rawValue && row[2] == (rule.onByDefault ? "on" : "off") && row[3] == (rule.applies ? "implemented" : "not applicable"), "\(row)")
            #expect(!row[4].isEmpty, "\(rule.name) says what Tally checks or why not")
        }
    }

    /// A finding names its rule by `LintRule.Name`: each name has exactly one entry in the catalogue.
    @Test func everyRuleNameHasOneCatalogueEntry() {
        let counts = Dictionary(grouping: LintRules.all, by: \.name).mapValues(\.count)
        let missing = LintRule.Name.allCases.filter { counts[$0] == nil }
        let twice = counts.filter { $0.value > 1 }.keys.map(\.rawValue).sorted()
        #expect(missing.isEmpty && twice.isEmpty, "without an entry: \(missing); twice: \(twice)")
        #expect(LintRules.all.count == LintRule.Name.allCases.count)
        for name in LintRule.Name.allCases { #expect(LintRules.named(name.rawValue)?.name == name) }
        #expect(LintRules.named("no-such-rule") == nil)
        // squawk's older name stands for the two timeout rules, wherever a name is given.
        #expect(LintRules.expandingAliases([.requireTimeoutSettings, .banDropColumn]) == [.requireLockTimeout, .requireStatementTimeout, .banDropColumn])
        #expect(LintRules.expandingAliases([.requireLockTimeout]) == [.requireLockTimeout])
    }

    /// Every rule name Tally takes from squawk is one squawk knows.
    @Test func everySquawkRuleNameIsSquawks() async throws {
        let script = Self.repository.appendingPathComponent("scripts/squawk.sh").path
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("tally-empty-\(UUID().uuidString).sql")
        try "SELECT 1;\n".write(to: empty, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: empty) }
        let names = LintRules.all.filter(\.squawk).map(\.name)
        #expect(names.count >= 70)
        // squawk refuses an --exclude that names a rule it does not have, naming it.
        let result = try await Command.run("/bin/bash", [script, "--exclude=" + names.map(\.rawValue).joined(separator: ","), empty.path])
        #expect(result.status == 0 && !result.output.contains("invalid"), "\(result.output)")
        let wrong = try await Command.run("/bin/bash", [script, "--exclude=no-such-rule", empty.path])
        #expect(wrong.status != 0 && wrong.output.contains("no-such-rule"), "the check would catch a wrong name: \(wrong.output)")
    }
}
