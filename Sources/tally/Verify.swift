import ArgumentParser
import Foundation
import TallyCredits
import TallyMigrate
import TallyPostgres

extension DB {
    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Compare the live schema with what the migrations produce, and look for redundant, NOT VALID and unindexed foreign keys.",
            discussion: """
                The migrations the history records as applied are run on a scratch database on the same server \
                (the user needs CREATEDB; it gets the live database's extensions and an empty history table), and \
                both are introspected; pending migrations are not drift. Compared: tables, columns with types, nullability and defaults, primary key, unique, \
                check and foreign-key constraints with their actions, indexes. Exit status 1 on drift; with \
                --strict also on any finding.
                """
        )
        @Option(name: .customLong("dir"), help: ArgumentHelp("Migrations folder (default: Tally's own schema).", valueName: "path"))
        var directory: String?
        @Option(help: ArgumentHelp("History table to leave out of the comparison, as schema.table.", valueName: "table"))
        var historyTable: String = HistoryTable.drizzleDefault.description
        @Flag(help: "Also fail on redundant, NOT VALID or unindexed foreign keys, or an INVALID index.") var strict = false
        @Flag(help: "Print the result as JSON.") var json = false
        @Option(help: ArgumentHelp("Also compare each app role's grants with this ownership manifest (TOML); a difference is drift.", valueName: "file"))
        var owners: String?
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            let folder = try MigrationFolder(path: directory ?? TallyCredits.migrationsFolder)
            let history = try HistoryTable(parsing: historyTable)
            let settings = try await database.resolve(quiet: json)
            var result = try await SchemaVerify.verify(settings, against: folder, historyTable: history) { line in
                if !json { printErr(line) }
            }
            if let owners {
                let manifest = try OwnershipManifest.load(path: owners)
                let differences = try await withSingleConnection(settings) { try await DatabaseRoles.manifestDifferences(manifest, on: $0) }
                result.differences += differences.map { SchemaVerification.Difference(kind: "grant", object: $0, expected: nil, actual: nil) }
            }
            if json {
                try printJSON(result)
            } else {
                if result.differences.isEmpty {
                    print("Schema matches the migrations in \(folder.path).")
                } else {
                    print("Schema differs from the migrations in \(folder.path):")
                    var rows: [[String]] = [["", "OBJECT", "MIGRATIONS MAKE", "LIVE HAS"]]
                    for d in result.differences {
                        rows.append([d.kind, d.object, d.expected ?? "-", d.actual ?? "-"])
                    }
                    printTable(rows)
                }
                if !result.findings.isEmpty {
                    print("\nFindings:")
                    for f in result.findings { print("  \(f.kind): \(f.message)") }
                }
            }
            if result.hasDrift || (strict && !result.findings.isEmpty) { throw ExitCode.failure }
        }
    }
}
