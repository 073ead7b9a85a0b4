import ArgumentParser
import Foundation
import TallyCredits
import TallyMigrate
import TallyPostgres

extension DB {
    struct Roles: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the owner role (migrations, DDL) and the application role (the server: DML only, the ledger append-only).",
            discussion: """
                Run as a superuser (or a role with CREATEROLE that owns Tally's objects). The owner role comes to own \
                Tally's schemas, tables, sequences and functions; the application role gets SELECT, INSERT, UPDATE and \
                DELETE on Tally's tables but only SELECT and INSERT on the ledger and the admin audit log, no DDL, and \
                the same on what later migrations (run as the owner) create. Safe to run again. A new role's password \
                is made here and printed once, in its URL; an existing role keeps its password unless --new-passwords. \
                Then serve with: DATABASE_URL=<application URL> tally serve --owner-url <owner URL> --migrate
                """)
        @OptionGroup var database: DatabaseOptions
        @Option(help: "Name of the owner role.") var ownerRole = DatabaseRoles.standardOwner
        @Option(help: "Name of the application role.") var appRole = DatabaseRoles.standardApplication
        @Flag(help: "Give existing roles new passwords too (servers using the old ones stop connecting).") var newPasswords = false
        @Option(help: ArgumentHelp("Instead: one role per app of this ownership manifest (TOML), holding exactly what it gives: owners own their tables, writers SELECT/INSERT/UPDATE/DELETE, readers SELECT. tally db verify --owners reports grants that differ.", valueName: "file"))
        var owners: String?

        func validate() throws {
            for name in [ownerRole, appRole] where name.isEmpty || name.count > 63 || name.hasPrefix("pg_") {
                throw ValidationError("a role name is 1–63 characters and does not start with pg_; \(name.prefix(70)) is not one")
            }
            guard ownerRole != appRole else { throw ValidationError("--owner-role and --app-role must differ") }
        }

        /// A role made here, with a new password printed once in its URL, or left with its password.
        func ensure(_ role: String, purpose: String, settings: ConnectionSettings, on connection: DatabaseConnection) async throws -> String {
            let created = try await DatabaseRoles.ensureLoginRole(role, password: nil, on: connection)
            var url = settings
            url.user = role
            if created || newPasswords {
                let password = randomHex(bytes: 24)
                try await DatabaseRoles.setPassword(role, password, on: connection)
                url.password = password
                return "\(created ? "Created" : "New password for") the \(purpose) role \(role): \(url.url())"
            }
            return "The \(purpose) role \(role) exists; its password is unchanged (--new-passwords sets one): \(url.url(includingPassword: false))"
        }

        func run() async throws {
            let settings = try await database.resolve()
            if let owners {
                let manifest = try OwnershipManifest.load(path: owners)
                let lines = try await withSingleConnection(settings) { connection -> [String] in
                    var lines: [String] = []
                    try await connection.transaction { connection in
                        for app in manifest.apps { lines.append(try await ensure(app.role, purpose: "\(app.name) app", settings: settings, on: connection)) }
                        try await DatabaseRoles.applyManifest(manifest, on: connection)
                    }
                    return lines
                }
                for line in lines { print(line) }
                print("Each app's role holds what \(owners) gives it; tally db verify --owners \(owners) reports grants that drift from it.")
                return
            }
            let lines = try await withSingleConnection(settings) { connection -> [String] in
                var lines: [String] = []
                try await connection.transaction { connection in
                    for (role, purpose) in [(ownerRole, "owner (migrations, DDL)"), (appRole, "application (tally serve)")] {
                        lines.append(try await ensure(role, purpose: purpose, settings: settings, on: connection))
                        if role == ownerRole { try await DatabaseRoles.transferOwnership(to: role, on: connection) }
                    }
                    try await DatabaseRoles.grantApplication(appRole, owner: ownerRole, on: connection)
                }
                return lines
            }
            for line in lines { print(line) }
            print("Serve as the application role and migrate as the owner: DATABASE_URL=<application URL> tally serve --owner-url <owner URL> --migrate")
        }
    }
}
