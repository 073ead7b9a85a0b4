import ArgumentParser
import Foundation
import TallyMigrate
import TallyPostgres

extension DB {
    struct DriftCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "drift",
            abstract: "Compare the live database with what an app declares: its Drizzle snapshot.",
            discussion: """
                --drizzle DIR reads the newest snapshot of a Drizzle migrations folder (meta/NNNN_snapshot.json, \
                versions 5 to 7, or the 1.0 layout's <timestamp>_<name>/snapshot.json, version 8). What it declares \
                is created in a scratch database on the same server (the user needs CREATEDB), so PostgreSQL spells \
                both sides, then both catalogs are compared over the snapshot's schemas: tables, columns (type, \
                nullability, default, identity, generated), primary keys, foreign keys with their actions, unique \
                and check constraints, indexes, enums. Each finding names the object, both sides and the fix. A name \
                that differs alone is a notice. Exit status: 0 no drift, 2 drift, 1 error.
                """)
        @Option(help: ArgumentHelp("A Drizzle migrations folder; its newest snapshot is the app's declaration.", valueName: "dir"))
        var drizzle: String
        @Option(help: ArgumentHelp("Output: text, json, or github (GitHub Actions annotations).", valueName: "format"))
        var format: DriftFormat = .text
        @Option(help: ArgumentHelp("History table to leave out, as schema.table.", valueName: "table"))
        var historyTable: String = HistoryTable.drizzleDefault.description
        @OptionGroup var database: DatabaseOptions

        enum DriftFormat: String, ExpressibleByArgument, CaseIterable { case text, json, github }

        func run() async throws {
            let declaration = try DrizzleSnapshot.newest(in: drizzle)
            let history = try HistoryTable(parsing: historyTable)
            let settings = try await database.resolve(quiet: format != .text)
            let report = try await Drift.check(declaration, against: settings, historyTable: history) { line in
                if format == .text { printErr(line) }
            }
            switch format {
            case .json: try printJSON(report)
            case .github: for line in report.githubAnnotations { print(line) }
            case .text:
                if report.findings.isEmpty {
                    print("No drift: the database has what \(report.source) declares.")
                } else {
                    let drift = report.findings.filter { !$0.notice }.count
                    print("\(drift) difference(s) between the database and \(report.source)\(drift < report.findings.count ? ", \(report.findings.count - drift) notice(s)" : ""):")
                    for finding in report.findings { print("  \(finding.notice ? "notice " : "")\(finding.message)") }
                }
            }
            if report.hasDrift { throw ExitCode(2) }
        }
    }
}
