import ArgumentParser
import Foundation
import TallyCredits
import TallyMigrate
import TallyPostgres

#if canImport(Glibc)
import Glibc
#endif

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply and inspect schema migrations (Drizzle-compatible history).",
        discussion: """
            Works on Tally's own schema by default, or with --dir on any Drizzle 0.x folder (meta/_journal.json \
            + TAG.sql), Drizzle 1.0 folder (<YYYYMMDDHHMMSS>_<name>/migration.sql) or plain folder of \
            NNNN_name.sql files. SQL is read with PostgreSQL's own parser. The history lives in \
            drizzle.__drizzle_migrations in exactly Drizzle's shape (hash = SHA-256 of the file, created_at = \
            the journal's `when`; name and applied_at for 1.0 folders), so a Drizzle app sharing the database \
            sees the same history; Tally's own records are in the schema tally_migrate.

            Behind a transaction-mode pooler (PgBouncer, Supabase, Neon): every command works through it. \
            Runners take a lease row (tally_migrate.runner_leases: owner, host and pid, expiry), not a session \
            lock, renew it while they work and confirm it inside each migration's transaction, so concurrent \
            runners apply each migration once; a runner that dies is taken over when its lease expires (30 s). \
            Settings are made for a transaction only (SET LOCAL), never for a session.
            """,
        subcommands: [Status.self, PlanCommand.self, Up.self, Validate.self, Baseline.self, Repair.self, Down.self]
    )

    struct Options: ParsableArguments {
        @Option(name: .customLong("dir"), help: ArgumentHelp("Migrations folder: Drizzle 0.x or 1.0, or NNNN_name.sql files (default: Tally's own schema).", valueName: "path"))
        var directory: String?

        @Option(help: ArgumentHelp("History table as schema.table.", valueName: "table"))
        var historyTable: String = HistoryTable.drizzleDefault.description

        @Flag(help: "Print the result as JSON.") var json = false

        @OptionGroup var database: DatabaseOptions

        func migrator(options: Migrator.Options = .init()) async throws -> Migrator {
            let folder = try MigrationFolder(path: directory ?? TallyCredits.migrationsFolder)
            let history = try HistoryTable(parsing: historyTable)
            let settings = try await database.resolve(quiet: json)
            let migrator = Migrator(folder: folder, database: settings, historyTable: history, options: options) { printErr($0) }
            // Every command says when the database has another history table (the seed's public.__drizzle_migrations).
            for other in try await migrator.otherHistoryTables() {
                printErr("Note: \(other.table) also exists (\(other.rows) row\(other.rows == 1 ? "" : "s")); this command uses \(history). Pass --history-table \(other.table) to work on it.")
            }
            return migrator
        }
    }

    /// `--owners FILE --app NAME`: whose migrations these are, checked against the ownership manifest.
    struct OwnershipOptions: ParsableArguments {
        @Option(help: ArgumentHelp("The ownership manifest (TOML): which app owns which tables. With --app, DDL on another app's table is refused.", valueName: "file"))
        var owners: String?
        @Option(help: ArgumentHelp("The app (a name in --owners) whose migrations these are.", valueName: "name"))
        var app: String?
        @Flag(help: "Run DDL on tables another app owns anyway (recorded in tally_migrate.overrides).") var allowForeignDDL = false

        func validate() throws {
            guard (owners == nil) == (app == nil) else { throw ValidationError("--owners and --app go together: the manifest, and which of its apps these migrations belong to") }
            if allowForeignDDL, owners == nil { throw ValidationError("--allow-foreign-ddl goes with --owners and --app") }
        }

        func check() throws -> OwnershipCheck? {
            guard let owners, let app else { return nil }
            return try OwnershipCheck(manifest: try OwnershipManifest.load(path: owners), app: app, allowForeignDDL: allowForeignDDL)
        }
    }

    struct TimeoutOptions: ParsableArguments {
        @Option(help: ArgumentHelp("lock_timeout for each statement, in seconds.", valueName: "seconds"))
        var lockTimeout: Double = 5
        @Option(help: ArgumentHelp("Retries after a lock timeout (with doubling backoff from 1s).", valueName: "n"))
        var lockRetries: Int = 3
        @Option(help: ArgumentHelp("statement_timeout for each statement, in seconds (0: none).", valueName: "seconds"))
        var statementTimeout: Double = 0

        func validate() throws {
            guard lockTimeout > 0 else { throw ValidationError("--lock-timeout must be more than 0 seconds") }
            guard lockRetries >= 0 else { throw ValidationError("--lock-retries cannot be negative") }
            guard statementTimeout >= 0 else { throw ValidationError("--statement-timeout cannot be negative") }
        }

        var options: Migrator.Options {
            var o = Migrator.Options()
            o.lockTimeout = .milliseconds(Int64(lockTimeout * 1000))
            o.lockRetries = lockRetries
            o.statementTimeout = statementTimeout > 0 ? .milliseconds(Int64(statementTimeout * 1000)) : nil
            return o
        }
    }

    // MARK: status / validate

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show each migration: applied, baseline, pending or changed; and history rows no file matches.",
            discussion: "Exit status 0 when the history matches the files (pending migrations are fine), 1 when a file changed after it was applied or a history row matches no file."
        )
        @OptionGroup var options: Options

        func run() async throws {
            let report = try await options.migrator().status()
            if options.json { try printJSON(report) } else { printReport(report) }
            if !report.isConsistent { throw ExitCode.failure }
        }
    }

    struct Validate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the folder and the history, for CI: exit 1 on a changed file, an unknown history row, or work an interrupted run left (a key still NOT VALID, an INVALID index).",
            discussion: "Also fails on a pending migration older than the newest applied one with --strict."
        )
        @OptionGroup var options: Options
        @Flag(help: "Also fail when a pending migration is older than the newest applied one, or a migration failed last time.")
        var strict = false

        func run() async throws {
            let report = try await options.migrator().status()
            let ok = report.isValid(strict: strict)
            if options.json {
                struct Validation: Encodable { var ok: Bool; var report: MigrationReport }
                try printJSON(Validation(ok: ok, report: report))
            } else {
                printReport(report)
                print(ok ? "\nValid." : "\nNot valid.")
            }
            if !ok { throw ExitCode.failure }
        }
    }

    // MARK: up

    struct Up: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Apply pending migrations, each in its own transaction with its history row.",
            discussion: """
                One runner at a time per history table (a second waits, then finds nothing to do), also \
                behind a transaction-mode pooler (see `tally migrate --help`). Each \
                migration's statements run in file order in one transaction with its history row; a failure \
                rolls it back whole and names the migration, the statement, file and line, SQLSTATE and \
                PostgreSQL's message. Migrations with CREATE INDEX CONCURRENTLY run outside a transaction, \
                statement by statement, with the history row written last; an INVALID index an interrupted run \
                left is dropped and rebuilt. A statement that adds one named foreign key to an existing table \
                (also inside drizzle-kit's DO block) is run NOT VALID, after its orphans are counted in the same \
                transaction (any stops the migration); the key is recorded and validated after commit in its \
                own transaction, so writes never wait for a table scan, and a killed run resumes from the \
                record. --strict-sql runs the files as written.
                """
        )
        @OptionGroup var options: Options
        @OptionGroup var timeouts: TimeoutOptions
        @Option(help: ArgumentHelp("Stop after this migration (tag, or its number).", valueName: "tag")) var to: String?
        @Flag(help: "Show what would run; change nothing.") var dryRun = false
        @Flag(help: "Run files exactly as written (no NOT VALID + VALIDATE rewrite of foreign keys).") var strictSQL = false
        @Flag(help: "Skip the backup taken before applying (the embedded database is never backed up).") var noBackup = false
        @OptionGroup var ownership: OwnershipOptions

        func run() async throws {
            var migratorOptions = timeouts.options
            migratorOptions.strictSQL = strictSQL
            migratorOptions.ownership = try ownership.check()
            let migrator = try await options.migrator(options: migratorOptions)
            let backup: BackupBeforeApplying = noBackup ? .skip
                : options.database.externalURL == nil ? .embedded
                : .into(directory: options.database.backupDirectory)
            let result = try await migrator.up(to: to, dryRun: dryRun, backup: backup) { printErr($0) }
            if options.json { try printJSON(result); return }
            if dryRun {
                if result.planned.isEmpty { print("Nothing to apply.") }
                for migration in result.planned {
                    print("\(migration.tag)\(migration.transactional ? "" : " (outside a transaction)"):")
                    for (n, statement) in migration.statements.enumerated() {
                        print("  \(n + 1). \(statement.replacingOccurrences(of: "\n", with: "\n     "))")
                    }
                }
                return
            }
            print(result.applied.isEmpty ? "Nothing to apply: the database is up to date." : "Applied \(result.applied.count): \(result.applied.joined(separator: ", "))")
        }
    }

    // MARK: baseline

    struct Baseline: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Mark migrations applied without running them, for a database whose schema is already there.",
            discussion: """
                Before writing history rows, the migrations through TAG are applied to a scratch database on the \
                same server and every table, column, constraint and index they create is looked up in this \
                database; anything missing is listed and baseline refuses (--force overrides). Idempotent.
                """
        )
        @OptionGroup var options: Options
        @Option(help: ArgumentHelp("The last migration to mark (tag, or its number).", valueName: "tag")) var through: String
        @Flag(help: "Mark them even when objects they create are missing.") var force = false

        func run() async throws {
            let result = try await options.migrator().baseline(through: through, force: force)
            if options.json { try printJSON(result); return }
            if !result.missing.isEmpty {
                printErr("WARNING: marked applied with --force although these objects are missing:")
                result.missing.forEach { printErr("  - \($0)") }
            }
            if !result.alreadyApplied.isEmpty { print("Already in the history: \(result.alreadyApplied.joined(separator: ", "))") }
            print(result.marked.isEmpty ? "Nothing to mark." : "Marked as applied (baseline): \(result.marked.joined(separator: ", "))")
        }
    }

    // MARK: repair

    struct Repair: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Realign history rows with the files: rewrite changed hashes, archive rows no file matches.",
            discussion: "Shows the difference first and changes nothing until confirmed (--yes for scripts). Removed rows are kept in tally_migrate.removed_history_rows."
        )
        @OptionGroup var options: Options
        @Flag(help: "Apply without asking.") var yes = false

        func run() async throws {
            let migrator = try await options.migrator()
            let preview = try await migrator.repair(apply: false)
            if preview.isEmpty {
                if options.json { try printJSON(preview) } else { print("Nothing to repair: every history row matches its file.") }
                return
            }
            if !options.json { printRepair(preview, table: migrator.historyTable.description) }
            guard try confirm("Rewrite \(preview.rewrites.count) and remove \(preview.removed.count + preview.notApplied.count) history row(s)?", yes: yes) else {
                if options.json { try printJSON(preview) } else { print("Nothing changed.") }
                throw ExitCode.failure
            }
            let result = try await migrator.repair(apply: true)
            if options.json { try printJSON(result) } else { print("Repaired: \(result.rewrites.count) rewritten, \(result.removed.count + result.notApplied.count) removed (kept in tally_migrate.removed_history_rows).\(result.notApplied.isEmpty ? "" : " Now pending again: \(result.notApplied.map(\.tag).joined(separator: ", ")); apply with `tally migrate up`.")") }
        }
    }

    // MARK: down

    struct Down: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revert applied migrations with their down files (TAG.down.sql), newest first.",
            discussion: "Without --to, reverts only the newest applied migration. Refuses, changing nothing, when a migration on the way has no down file; then restore a backup instead."
        )
        @OptionGroup var options: Options
        @OptionGroup var timeouts: TimeoutOptions
        @Option(help: ArgumentHelp("Keep this migration and revert everything after it.", valueName: "tag")) var to: String?
        @Flag(help: "Revert without asking.") var yes = false

        func run() async throws {
            let migrator = try await options.migrator(options: timeouts.options)
            let plan = try await migrator.down(to: to, dryRun: true)
            if plan.planned.isEmpty {
                if options.json { try printJSON(plan) } else { print("Nothing to revert.") }
                return
            }
            if !options.json { print("Will revert: \(plan.planned.joined(separator: ", "))") }
            guard try confirm("Revert \(plan.planned.count) migration(s)? Their down files may drop data.", yes: yes) else {
                print("Nothing changed.")
                throw ExitCode.failure
            }
            let result = try await migrator.down(to: to)
            if options.json { try printJSON(result) } else { print("Reverted: \(result.reverted.joined(separator: ", "))") }
        }
    }
}
