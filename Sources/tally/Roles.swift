import ArgumentParser
import Foundation
import TallyCredits
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

        func validate() throws {
            for name in [ownerRole, appRole] where name.isEmpty || name.count > 63 || name.hasPrefix("pg_") {
                throw ValidationError("a role name is 1–63 characters and does not start with pg_; \(name.prefix(70)) is not one")
            }
            guard ownerRole != appRole else { throw ValidationError("--owner-role and --app-role must differ") }
        }

        func run() async throws {
            let settings = try await database.resolve()
            let lines = try await withSingleConnection(settings) { connection -> [String] in
                var lines: [String] = []
                try await connection.transaction { connection in
                    for (role, purpose) in [(ownerRole, "owner (migrations, DDL)"), (appRole, "application (tally serve)")] {
                        let created = try await DatabaseRoles.ensureLoginRole(role, password: nil, on: connection)
                        var url = settings
                        url.user = role
                        if created || newPasswords {
                            let password = randomHex(bytes: 24)
                            try await DatabaseRoles.setPassword(role, password, on: connection)
                            url.password = password
                            lines.append("\(created ? "Created" : "New password for") the \(purpose) role \(role): \(url.url())")
                        } else {
                            url.password = "…"
                            lines.append("The \(purpose) role \(role) exists; its password is unchanged (--new-passwords sets one): \(url.url(includingPassword: false))")
                        }
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
