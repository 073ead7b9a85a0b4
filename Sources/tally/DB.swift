import ArgumentParser
import Foundation
import TallyMigrate
import TallyPostgres

#if canImport(Glibc)
import Glibc
#endif

struct DB: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "db",
        abstract: "Manage the embedded PostgreSQL cluster and connect to the database.",
        subcommands: [Start.self, Stop.self, Status.self, URLCommand.self, Psql.self, BackupCommand.self, RestoreCommand.self, Orphans.self, Verify.self, DriftCommand.self, AuditCommand.self, Roles.self]
    )

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create (once) and start the embedded PostgreSQL cluster.",
            discussion: "Safe to run while it already runs, and from several processes at once: one starts it, the others reuse it."
        )
        @OptionGroup var database: DatabaseOptions
        @Flag(help: "Print the status as JSON.") var json = false

        func run() async throws {
            try refuseExternal(database, action: "start")
            let cluster = database.cluster
            try await cluster.start { line in printErr(line) }
            try report(cluster.status(), json: json)
        }
    }

    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop the embedded PostgreSQL cluster (its data is kept).")
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            try refuseExternal(database, action: "stop")
            let stopped = try await database.cluster.stop()
            print(stopped ? "Stopped PostgreSQL in \(database.cluster.dataDirectory)." : "PostgreSQL in \(database.cluster.dataDirectory) was not running.")
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show whether the database is running and where.",
            discussion: "Exit status: 0 when running (or, with DATABASE_URL, reachable), 3 when the embedded cluster is stopped or not created, 1 when an external database cannot be reached."
        )
        @OptionGroup var database: DatabaseOptions
        @Flag(help: "Print the status as JSON.") var json = false

        func run() async throws {
            if let url = database.externalURL {
                let settings = try ConnectionSettings(url: url)
                var reachable = true
                var problem: String?
                do {
                    try await withPostgresClient(settings, maximumConnections: 1) { _ in }
                } catch {
                    reachable = false
                    problem = describe(error)
                }
                struct External: Encodable { var url: String; var reachable: Bool; var error: String? }
                if json {
                    try printJSON(External(url: settings.description, reachable: reachable, error: problem))
                } else {
                    print("External database (DATABASE_URL)")
                    print("  url:       \(settings)")
                    print("  reachable: \(reachable ? "yes" : "no — \(problem ?? "")")")
                }
                if !reachable { throw ExitCode.failure }
                return
            }
            let status = try database.cluster.status()
            try report(status, json: json)
            if !status.running { throw ExitCode(3) }
        }
    }

    struct URLCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "url",
            abstract: "Print the connection URL (starting the embedded cluster if needed).",
            discussion: "For scripts: psql \"$(tally db url)\". The URL contains the password; --redact hides it."
        )
        @OptionGroup var database: DatabaseOptions
        @Flag(help: "Print *** in place of the password.") var redact = false

        func run() async throws {
            let settings = try await database.resolve(quiet: true)
            print(settings.url(includingPassword: !redact))
        }
    }

    struct Psql: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Open psql on the database (starting the embedded cluster if needed).",
            discussion: "Arguments after -- go to psql, e.g. tally db psql -- -c 'select 1'."
        )
        @OptionGroup var database: DatabaseOptions
        @Argument(parsing: .postTerminator, help: "Arguments passed to psql.") var psqlArguments: [String] = []

        func run() async throws {
            let settings = try await database.resolve()
            let binaries = try? database.cluster.binariesForCluster()
            guard let psql = binaries?.clientTool("psql") ?? PostgresBinaries.searchPath(for: "psql") else {
                throw CleanExit.message("psql was not found; install it (apt-get install postgresql-client) or connect with: \(settings)")
            }
            var env = ProcessInfo.processInfo.environment
            env.merge(settings.libpqEnvironment) { _, new in new }
            let argv = [psql] + psqlArguments
            let envp = env.map { "\($0.key)=\($0.value)" }
            // Replace this process with psql so it owns the terminal.
            let cArgs = argv.map { strdup($0) } + [nil]
            let cEnv = envp.map { strdup($0) } + [nil]
            execve(psql, cArgs, cEnv)
            throw ValidationError("could not run \(psql): \(String(cString: strerror(errno)))")
        }
    }
}

extension DB {
    struct BackupCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "backup",
            abstract: "Back up the database with pg_dump (custom format), then check the file reads back whole.",
            discussion: "Default file: .tally/backups/<database>-<UTC time>.dump (beside the embedded cluster's folder). pg_dump must be at least the server's major version."
        )
        @Option(help: ArgumentHelp("Where to write the backup.", valueName: "file")) var out: String?
        @Flag(help: "Print the result as JSON.") var json = false
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            let settings = try await database.resolve(quiet: json)
            let result = try await Backup.create(settings, to: out ?? Backup.defaultPath(for: settings.database, in: database.backupDirectory))
            if json { try printJSON(result); return }
            print("Backed up \(settings.database) to \(result.path) (\(result.bytes) bytes, \(result.entries) entries, checked with pg_restore --list) in \(String(format: "%.1f", result.seconds))s.")
        }
    }

    struct RestoreCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "restore",
            abstract: "Restore a backup into the database (or another one, with --database-url).",
            discussion: "An empty database is restored into directly. One that has tables is only replaced with --yes, after its current state is backed up; the restore runs in one transaction, so a failure changes nothing."
        )
        @Argument(help: ArgumentHelp("A file written by `tally db backup` (pg_dump -Fc).", valueName: "file")) var file: String
        @Flag(help: "Replace a database that is not empty.") var yes = false
        @Flag(help: "Print the result as JSON.") var json = false
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            let settings = try await database.resolve(quiet: json)
            let result = try await Backup.restore(file, into: settings, replace: yes, backupDirectory: database.backupDirectory)
            if json { try printJSON(result); return }
            if let before = result.targetBackup { print("Backed up the target's previous state to \(before.path).") }
            print("Restored \(file) into \(settings.database).")
        }
    }
}

private func refuseExternal(_ options: DatabaseOptions, action: String) throws {
    if options.externalURL != nil {
        throw ValidationError("DATABASE_URL (or --database-url) is set, so Tally uses that server and does not \(action) it. Unset it to manage the embedded cluster.")
    }
}

private func report(_ status: LocalCluster.Status, json: Bool) throws {
    if json {
        try printJSON(status)
        return
    }
    print("Embedded PostgreSQL cluster")
    print("  data:     \(status.dataDirectory)\(status.storedAt != status.dataDirectory ? " -> \(status.storedAt)" : "")")
    guard status.initialized else {
        print("  state:    not created (tally db start creates it)")
        return
    }
    print("  version:  \(status.postgresVersion ?? "?")")
    print("  state:    \(status.running ? "running (pid \(status.pid.map(String.init) ?? "?"))" : "stopped")")
    if let port = status.port { print("  address:  127.0.0.1:\(port)") }
    if let socket = status.socketDirectory { print("  socket:   \(socket)") }
    if let url = status.url { print("  url:      \(url)") }
}
