import ArgumentParser
import Foundation
import PostgresNIO
import TallyCredits
import TallyMigrate
import TallyPostgres

extension DB {
    struct Orphans: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Find rows that break a foreign key; archive and delete them (--clean); put them back (--restore).",
            discussion: """
                Without --fk: every foreign key the database declares (NOT VALID ones too) and, with --dir, every \
                one a pending migration would add. Counts use NOT EXISTS anti-joins. --clean moves the orphaned rows \
                and every row depending on them (declared foreign keys, plus the columns given with --include for \
                references the database does not declare) into the tally_archive schema and deletes them, in one \
                transaction; it asks first (--yes for scripts). --restore BATCH puts a batch back. \
                Exit status 1 when orphans are found (without --clean).
                """
        )

        @Option(name: .customLong("fk"), help: ArgumentHelp("A key to check: CHILD_TABLE.COLUMN=PARENT_TABLE.COLUMN (repeatable).", valueName: "key"))
        var foreignKeys: [String] = []
        @Option(name: .customLong("include"), help: ArgumentHelp("With --clean: an undeclared reference to the orphaned key, TABLE.COLUMN (repeatable).", valueName: "column"))
        var includes: [String] = []
        @Option(name: .customLong("dir"), help: ArgumentHelp("Migrations folder whose pending foreign keys to check too.", valueName: "path"))
        var directory: String?
        @Option(help: ArgumentHelp("History table of --dir, as schema.table.", valueName: "table"))
        var historyTable: String = HistoryTable.drizzleDefault.description
        @Flag(help: "Archive the orphaned rows and their dependents, then delete them.") var clean = false
        @Option(help: ArgumentHelp("With --clean: why, kept with the batch.", valueName: "text")) var reason: String = "orphan cleanup"
        @Option(help: ArgumentHelp("Put an archived batch back.", valueName: "batch")) var restore: Int?
        @Flag(help: "List archived batches.") var batches = false
        @Flag(help: "Do it without asking.") var yes = false
        @Flag(help: "Print the result as JSON.") var json = false
        @OptionGroup var database: DatabaseOptions

        func validate() throws {
            if !includes.isEmpty && !clean { throw ValidationError("--include only makes sense with --clean") }
            if clean && restore != nil { throw ValidationError("give --clean or --restore, not both") }
        }

        func run() async throws {
            let settings = try await database.resolve(quiet: json)
            let osUser = ProcessInfo.processInfo.environment["USER"] ?? ProcessInfo.processInfo.userName
            let explicit = try foreignKeys.map { try OrphanScan.parseForeignKey($0) }
            let extra = try includes.map { text in
                let (table, column) = try OrphanScan.parseColumn(text, flag: "--include")
                return OrphanArchive.Include(table: table, column: column)
            }
            var pending: [(ForeignKeyDefinition, String)] = []
            if let directory {
                let migrator = Migrator(folder: try MigrationFolder(path: directory), database: settings, historyTable: try HistoryTable(parsing: historyTable))
                pending = try await OrphanScan.pendingForeignKeys(migrator)
            }

            try await withSingleConnection(settings) { connection in
                if batches {
                    let list = try await OrphanArchive.batches(on: connection)
                    if json { try printJSON(list) } else { printBatches(list) }
                    return
                }
                if let restore {
                    guard try confirm("Restore archive batch \(restore) into its tables?", yes: yes) else { throw ExitCode.failure }
                    let batch = try await OrphanArchive.restore(batch: restore, on: connection)
                    if json { try printJSON(batch) } else { print("Restored batch \(batch.id): " + batch.moved.map { "\($0.rows) row(s) of \($0.table)" }.joined(separator: ", ")) }
                    return
                }

                let reports = try await OrphanScan.scanAll(explicit: explicit, includes: extra, pending: pending, on: connection) { printErr($0) }
                let found = reports.filter { $0.orphanedRows > 0 }

                guard clean else {
                    if json { try printJSON(reports) } else { printOrphans(reports) }
                    if !found.isEmpty { throw ExitCode.failure }
                    return
                }
                if found.isEmpty {
                    if json { try printJSON(reports) } else { printOrphans(reports); print("Nothing to clean.") }
                    return
                }
                if !json { printOrphans(reports, hint: false) }
                guard try confirm("Archive and delete the orphaned rows of \(found.count) key(s) and every row depending on them?", yes: yes) else {
                    print("Nothing changed.")
                    throw ExitCode.failure
                }
                let batch = try await OrphanArchive.clean(found.map(\.foreignKey), include: extra, reason: reason, osUser: osUser, on: connection)
                if json { try printJSON(batch); return }
                print("Archived and deleted (batch \(batch.id)):")
                printTable([["TABLE", "ROWS"]] + batch.moved.map { [$0.table, String($0.rows)] })
                print("Put them back with: tally db orphans --restore \(batch.id)")
            }
        }
    }
}

private func printOrphans(_ reports: [OrphanReport], hint: Bool = true) {
    var rows: [[String]] = [["TABLE", "KEY", "REFERENCES", "SOURCE", "ORPHANS", "SAMPLE KEYS", "SECONDS"]]
    for r in reports {
        rows.append([
            r.foreignKey.table.description,
            (r.foreignKey.name.map { "\($0) " } ?? "") + "(\(r.foreignKey.columns.joined(separator: ", ")))",
            "\(r.foreignKey.referencedTable)(\(r.foreignKey.referencedColumns.joined(separator: ", ")))",
            r.source, String(r.orphanedRows), r.sampleKeys.joined(separator: "; "), String(format: "%.3f", r.seconds),
        ])
    }
    printTable(rows)
    let total = reports.reduce(0) { $0 + $1.orphanedRows }
    if total == 0 {
        print("No orphaned rows.")
    } else {
        print("\(total) orphaned row(s)." + (hint ? " Archive them with --clean (add --include TABLE.COLUMN for references the database does not declare)." : ""))
    }
}

private func printBatches(_ batches: [OrphanArchive.Batch]) {
    if batches.isEmpty { print("No archived batches."); return }
    var rows: [[String]] = [["BATCH", "CREATED", "BY", "REASON", "ROWS", "RESTORED"]]
    let f = ISO8601DateFormatter()
    for b in batches {
        rows.append([String(b.id), f.string(from: b.createdAt), b.createdBy, b.reason,
                     b.moved.map { "\($0.table): \($0.rows)" }.joined(separator: ", "), b.restoredAt.map { f.string(from: $0) } ?? "-"])
    }
    printTable(rows)
}
