import ArgumentParser
import Foundation
import TallyMigrate

#if canImport(Glibc)
import Glibc
#endif

// How `tally migrate` prints its reports.

func printReport(_ report: MigrationReport) {
    print("Migrations in \(report.folder)")
    print("History table \(report.historyTable)\n")
    let formatter = ISO8601DateFormatter()
    var rows: [[String]] = [["#", "TAG", "STATE", "APPLIED", "HASH"]]
    for entry in report.entries {
        var state = entry.state.rawValue
        var hash = String(entry.hash.prefix(12))
        if entry.state == .changed { hash = "file \(entry.hash.prefix(12)) ≠ row \(entry.rowHash?.prefix(12) ?? "")" }
        if entry.olderThanNewestApplied { state += " (older than newest applied)" }
        rows.append([String(entry.index), entry.tag, state, entry.appliedAt.map { formatter.string(from: $0) } ?? (entry.state == .baseline ? "(marked)" : (entry.state == .applied ? "(not recorded)" : "-")), hash])
    }
    printTable(rows)
    if !report.unknownRows.isEmpty {
        print("\nHistory rows that match no file:")
        var unknown: [[String]] = [["ID", "HASH", "CREATED_AT", "NAME"]]
        for row in report.unknownRows {
            unknown.append([String(row.id), row.hash, row.createdAt.map(String.init) ?? "null", row.name ?? "-"])
        }
        printTable(unknown)
    }
    for note in report.notes { print("\nNote: \(note)") }
    for key in report.unvalidated {
        print("\nStill to validate: \(key), added NOT VALID by a run that stopped; `tally migrate up` validates it.")
    }
    for index in report.invalidIndexes {
        print("\nINVALID index \(index): an interrupted CREATE INDEX CONCURRENTLY left it; `tally migrate up` drops and rebuilds it when its migration runs again (else DROP INDEX CONCURRENTLY it).")
    }
    for failure in report.failures {
        print("\nLast run of \(failure.tag) failed\(failure.statement.map { " at statement \($0)" } ?? ""): \(failure.error)")
    }
    let outOfOrder = report.pending.filter(\.olderThanNewestApplied)
    if !outOfOrder.isEmpty {
        print("\n\(outOfOrder.count) pending migration(s) are dated before the newest applied one: Drizzle's own migrator would skip them; `tally migrate up` applies them.")
    }
    if !report.changed.isEmpty || !report.unknownRows.isEmpty {
        print("\nThe history does not match the files: `tally migrate repair` shows and fixes the difference.")
    }
    let pending = report.pending.count
    let applied = report.entries.filter { $0.state == .applied || $0.state == .baseline }.count
    print("\n\(applied) applied, \(pending) pending, \(report.changed.count) changed, \(report.unknownRows.count) unknown history row(s).")
}

func printRepair(_ result: Migrator.RepairResult, table: String) {
    if !result.rewrites.isEmpty {
        print("History rows whose hash differs from their file (will be rewritten):")
        var rows: [[String]] = [["ID", "TAG", "HISTORY HASH", "FILE HASH"]]
        for r in result.rewrites { rows.append([String(r.rowID), r.tag, r.oldHash, r.newHash]) }
        printTable(rows)
    }
    if !result.notApplied.isEmpty {
        print("History rows that claim a migration ran, but what it creates is missing (will be removed; the migration becomes pending):")
        var rows: [[String]] = [["ID", "TAG", "MISSING"]]
        for r in result.notApplied { rows.append([String(r.rowID), r.tag, r.missing.joined(separator: ", ")]) }
        printTable(rows)
    }
    if !result.removed.isEmpty {
        print("History rows no file matches (will be moved to tally_migrate.removed_history_rows):")
        var rows: [[String]] = [["ID", "HASH", "CREATED_AT"]]
        for r in result.removed { rows.append([String(r.id), r.hash, r.createdAt.map(String.init) ?? "null"]) }
        printTable(rows)
    }
}

func printPlan(_ plan: Plan) {
    if plan.migrations.isEmpty {
        print("Nothing pending: the database is up to date.")
        return
    }
    for migration in plan.migrations {
        print("\(migration.tag)\(migration.transactional ? "" : " (runs outside a transaction)")")
        for statement in migration.statements {
            print("  \(statement.number). \(statement.sql.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " "))")
            for lock in statement.locks {
                print("       lock  \(lock.mode) on \(lock.table): \(lock.effect)")
            }
            for finding in statement.findings {
                print("       \(finding.severity)  \(finding.rule): \(finding.message)")
            }
            for finding in statement.silenced {
                print("       silenced  \(finding.rule) (\(finding.severity)), by a comment before the statement")
            }
        }
        for key in migration.foreignKeys {
            let name = key.foreignKey.name ?? "foreign key"
            if key.orphanedRows == 0 {
                print("  ✓ \(name): no rows of \(key.foreignKey.table) violate it")
            } else {
                print("  ✗ \(name): \(key.orphanedRows) row(s) of \(key.foreignKey.table) violate it (missing keys: \(key.sampleKeys.joined(separator: "; "))); `up` would stop here. Archive them with: tally db orphans --clean")
            }
        }
        print("")
    }
    print(planSummary(plan))
}

/// The plan's last lines: blocked, or ready, with the counts; and what comments silenced, where.
func planSummary(_ plan: Plan) -> String {
    var summary = if plan.blocked {
        "Blocked: a pending migration would fail on the data."
    } else if plan.errors > 0 {
        "Blocked: \(plan.errors) lint error(s) (`up` would fail or do harm); \(plan.warnings) warning(s)."
    } else {
        "\(plan.migrations.count) migration(s) ready; \(plan.warnings) lint warning(s)."
    }
    let silenced = plan.migrations.flatMap { migration in
        migration.statements.flatMap { statement in statement.silenced.map { "\($0.rule) at \(migration.file):\(statement.line)" } }
    }
    if !silenced.isEmpty { summary += "\nSilenced by comments (\(silenced.count)): " + silenced.joined(separator: "; ") }
    return summary
}
