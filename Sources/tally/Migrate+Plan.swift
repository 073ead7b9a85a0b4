import ArgumentParser
import Foundation
import TallyMigrate

extension Migrate {
    struct PlanCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "plan",
            abstract: "Show what `up` would do: statements, the locks each takes, lint findings, and orphans for every foreign key added.",
            discussion: "Changes nothing. Lint knows every squawk rule under squawk's name (the README's table lists them, with what Tally checks), inside DO blocks too, and judges each against the live database: no lock warnings for tables the pending migrations create or that hold no rows; on filled tables the finding says how many rows and what the lock blocks. --include turns on squawk's opt-in rules, --exclude turns rules off. Exit status 1 when a pending migration would fail on the data (rows that violate a foreign key it adds) or a lint finding is an error, or there are more warnings than --max-warnings. A comment line `-- tally:ignore rule` (or `-- squawk-ignore rule`) before a statement silences that rule for it. In CI, --format github annotates the migration files of a pull request, --format sarif feeds code scanning, and --scratch --applied-through TAG plans without production access."
        )
        @OptionGroup var options: Options
        @OptionGroup var ownership: OwnershipOptions
        @Flag(help: "Plan the files exactly as written (no online foreign keys).") var strictSQL = false
        @Option(help: ArgumentHelp(
            "Output: text; json (the plan, documented in the README); github (GitHub Actions annotations on each migration file and line); sarif (SARIF 2.1.0 for code scanning). --json is --format json.",
            valueName: "format"))
        var format: PlanFormat = .text
        @Option(help: ArgumentHelp("Exit 1 when there are more lint warnings than this (default: no limit).", valueName: "n"))
        var maxWarnings: Int?
        @Flag(help: "Plan without the live database: in a scratch database on the server (the embedded cluster by default), apply the migrations through --applied-through, plan the rest, then drop it. For CI on a pull request.")
        var scratch = false
        @Option(help: ArgumentHelp("With --scratch: the last migration the live database has applied (tag or number); the ones after it are planned.", valueName: "tag"))
        var appliedThrough: String?
        @Option(help: ArgumentHelp("Also report these rules, off by default as in squawk (comma-separated; the README lists them all), or `all`.", valueName: "rules"))
        var include: [String] = []
        @Option(help: ArgumentHelp("Do not report these rules (comma-separated). --exclude wins over --include.", valueName: "rules"))
        var exclude: [String] = []

        /// The rules to report: the default set, plus --include, minus --exclude.
        var lintRules: Set<LintRule.Name> {
            get throws {
                func names(_ values: [String], _ option: String) throws -> Set<LintRule.Name> {
                    let given = Set(values.flatMap { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }.filter { !$0.isEmpty })
                    if given.contains("all") { return Set(LintRules.all.filter(\.applies).map(\.name)) }
                    var names: Set<LintRule.Name> = []
                    for name in given.sorted() {
                        guard let rule = LintRules.named(name) else {
                            throw ValidationError("\(option) \(name): no such rule. Rules: \(LintRules.all.filter(\.applies).map(\.name.rawValue).joined(separator: ", "))")
                        }
                        // squawk's older name for the two timeout rules stands for them.
                        let expanded = LintRules.expandingAliases([rule.name])
                        if expanded == [rule.name], !rule.applies { throw ValidationError("\(option) \(name): \(rule.tally)") }
                        names.formUnion(expanded)
                    }
                    return names
                }
                return LintRules.defaultSet.union(try names(include, "--include")).subtracting(try names(exclude, "--exclude"))
            }
        }

        enum PlanFormat: String, ExpressibleByArgument, CaseIterable {
            case text, json, github, sarif
        }

        func validate() throws {
            if let maxWarnings, maxWarnings < 0 { throw ValidationError("--max-warnings must be 0 or more") }
            if appliedThrough != nil, !scratch { throw ValidationError("--applied-through goes with --scratch (the live database knows what it applied)") }
            _ = try lintRules
        }

        func run() async throws {
            var migratorOptions = Migrator.Options()
            migratorOptions.strictSQL = strictSQL
            migratorOptions.lintRules = try lintRules
            migratorOptions.ownership = try ownership.check()
            let migrator = try await options.migrator(options: migratorOptions)
            let plan = scratch ? try await migrator.planInScratchDatabase(appliedThrough: appliedThrough) : try await migrator.plan()
            let here = FileManager.default.currentDirectoryPath
            switch options.json ? .json : format {
            case .text: printPlan(plan)
            case .json: try printJSON(plan)
            case .github:
                for line in plan.githubAnnotations(relativeTo: here) { print(line) }
                printErr(planSummary(plan))
            case .sarif:
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try encoder.encode(plan.sarif(relativeTo: here, version: Tally.version)), as: UTF8.self))
            }
            if plan.blocked || plan.errors > 0 { throw ExitCode.failure }
            if let maxWarnings, plan.warnings > maxWarnings {
                printErr("\(plan.warnings) lint warning(s), more than --max-warnings \(maxWarnings)")
                throw ExitCode.failure
            }
        }
    }
}
