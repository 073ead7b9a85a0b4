import ArgumentParser
import TallyMigrate

extension Migrate {
    struct PlanCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "plan",
            abstract: "Show what `up` would do: statements, the locks each takes, lint findings, and orphans for every foreign key added.",
            discussion: "Changes nothing. Lint follows squawk's rules, inside DO blocks too. Exit status 1 when a pending migration would fail on the data (rows that violate a foreign key it adds) or a lint finding is an error."
        )
        @OptionGroup var options: Options
        @Flag(help: "Plan the files exactly as written (no online foreign keys).") var strictSQL = false

        func run() async throws {
            var migratorOptions = Migrator.Options()
            migratorOptions.strictSQL = strictSQL
            let plan = try await options.migrator(options: migratorOptions).plan()
            if options.json {
                try printJSON(plan)
            } else {
                printPlan(plan)
            }
            if plan.blocked || plan.errors > 0 { throw ExitCode.failure }
        }
    }
}
