import ArgumentParser
import Foundation
import Logging
import PostgresNIO
import TallyCredits
import TallyPostgres

#if canImport(Glibc)
import Glibc
#endif

/// What an operator command's calls into the credits store run with: the command's logger (`--log-level`).
var commandQueries: QueryContext { QueryContext(logger: Logger(label: "tally")) }

/// Runs `body` with the operator commands' library on the database (see `withCreditsDatabase`).
func withOperations<T: Sendable>(_ options: DatabaseOptions, _ body: (Operations) async throws -> T) async throws -> T {
    try await withCreditsDatabase(options) { client in try await body(Operations(client: client, context: commandQueries)) }
}

/// Runs `body` with a client on the database, its schema applied for the embedded one and checked otherwise.
func withCreditsDatabase<T: Sendable>(_ options: DatabaseOptions, _ body: (PostgresClient) async throws -> T) async throws -> T {
    let settings = try await options.resolve(quiet: true)
    try await SchemaGate.prepare(settings, apply: options.externalURL == nil) { printErr($0) }
    return try await withPostgresClient(settings) { client in try await body(client) }
}

struct Users: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Manage users.", subcommands: [Create.self, Erase.self])

    struct Erase: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Erase a user's personal data; their ledger rows stay.",
            discussion: """
                In one transaction: the user's API keys are revoked (their holds released), they leave every team, \
                what is left on their account expires with ledger entries marked "account closed", their sessions and \
                links end, pending invitations and queued mail to them are blanked, and the user row keeps only its id \
                (email erased-ID@erased.invalid, no name, a password nobody knows). Every ledger row stays. Refused \
                while the user is the last owner of a team with other members. Recorded in the admin audit log by id, \
                never by email. Erasure cannot be undone: it asks first (--yes for scripts); take `tally db backup` \
                before if your retention rules allow one.
                """)
        @Option(help: ArgumentHelp("The user, by email or id.", valueName: "user")) var user: String
        @Flag(help: "Do it without asking.") var yes = false
        @Flag(help: "Print the result as JSON.") var json = false
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            guard try confirm("Erase the personal data of \(user)? Their ledger rows stay; this cannot be undone.", yes: yes) else {
                throw ExitCode.failure
            }
            let erased = try await withOperations(database) { try await $0.eraseUser(user) }
            if json { try printJSON(erased) } else {
                print("""
                    Erased user \(erased.userID): \(erased.revokedKeys) key(s) revoked, \(erased.leftTeams) team(s) left, \
                    \(erased.endedSessions) session(s) ended, \(erased.forfeited) credit(s) expired on closing; \
                    \(erased.ledgerEntries) ledger row(s) kept.
                    """)
            }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a user with a verified email (an admin with --admin).",
            discussion: """
                Without --password, asks for it on the terminal (not echoed). The email counts as verified: an operator \
                vouches for it. Users who sign up through the API confirm theirs from a mailed link.
                """)
        @Option(help: "The user's email.") var email: String
        @Option(help: "The password (prefer the prompt: a flag ends up in shell history).") var password: String?
        @Option(help: "Display name.") var name: String?
        @Flag(help: "Make the user an admin (may grant credits).") var admin = false
        @Flag(help: "Print the result as JSON.") var json = false
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            var secret = password
            if secret == nil {
                guard isatty(STDIN_FILENO) != 0, let typed = getpass("Password for \(email): ") else {
                    throw ValidationError("give --password, or run in a terminal to be asked for it")
                }
                secret = String(cString: typed)
            }
            let user = try await withOperations(database) { operations in
                try await operations.createUser(email: email, password: secret!, name: name, admin: admin)
            }
            if json { try printJSON(user) } else { print("Created \(user.isAdmin ? "admin" : "user") \(user.email) (\(user.id)).") }
        }
    }
}

struct Credits: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Grant credits.", subcommands: [Grant.self])

    struct Grant: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Grant credits to a user's or a team's account.")
        @Option(help: ArgumentHelp("The user, by email or id.", valueName: "user")) var user: String?
        @Option(help: ArgumentHelp("The team, by id.", valueName: "id")) var team: String?
        @Option(help: "How many credits (a positive integer).") var amount: Int64
        @Option(help: ArgumentHelp("When the grant expires (ISO 8601, e.g. 2026-12-31T23:59:59Z).", valueName: "time")) var expires: String?
        @Option(help: "Lower numbers are spent first.") var priority: Int = 0
        @Option(help: "Why, kept in the ledger.") var description: String = "granted by an operator"
        @Flag(help: "Print the result as JSON.") var json = false
        @OptionGroup var database: DatabaseOptions

        func validate() throws {
            guard (user == nil) != (team == nil) else { throw ValidationError("give exactly one of --user and --team") }
            guard amount > 0 else { throw ValidationError("--amount must be a positive integer") }
        }

        func run() async throws {
            // A malformed time is a usage error (exit 64), found before anything is opened.
            if let expires {
                do { _ = try TextRules.time(expires, field: "--expires") } catch let error as CreditsError { throw ValidationError(error.message) }
            }
            let grant = try await withOperations(database) { operations in
                try await operations.grant(user: user, team: team, amount: amount, expires: expires, priority: priority, description: description)
            }
            if json { try printJSON(grant) } else { print("Granted \(amount) credits (grant \(grant.id)); the balance is now \(grant.balance).") }
        }
    }
}

struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage API keys and service keys.", subcommands: [Create.self, List.self, Revoke.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an API key for a user (drawing on a team's account with --team), or a service key (--service).",
            discussion: """
                The key is printed once; only its hash is stored. An API key spends from one account. A service key \
                (--service, tly_svc_…) is for the product's own backend: it works on any account within its scopes \
                (repeat --scope): grants:write, accounts:read, accounts:write (includes accounts:read), keys:write, \
                webhooks:write. Every request made with a service key is written to the admin audit log.
                """)
        @Option(help: ArgumentHelp("The owner, by email or id.", valueName: "user")) var user: String?
        @Option(help: ArgumentHelp("Spend from this team's account (the user must be its owner or admin).", valueName: "id")) var team: String?
        @Option(help: "The most this key may ever spend.") var limit: Int64?
        @Option(help: "A name to recognise it by.") var name: String = "cli"
        @Flag(help: "Create a service key for the product's backend instead (give --scope).") var service = false
        @Option(help: ArgumentHelp("A service key's scope; repeat for more.", valueName: "scope")) var scope: [String] = []
        @Flag(help: "Print the result as JSON.") var json = false
        @OptionGroup var database: DatabaseOptions

        func validate() throws {
            if service {
                guard user == nil, team == nil, limit == nil else { throw ValidationError("--service takes --name and --scope; drop --user, --team and --limit") }
                guard !scope.isEmpty else {
                    throw ValidationError("give at least one --scope: \(ServiceScope.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                do { _ = try ServiceScope.parse(scope) } catch let error as CreditsError { throw ValidationError(error.message) }
            } else {
                guard user != nil else { throw ValidationError("give --user (the key's owner), or --service for a service key") }
                guard scope.isEmpty else { throw ValidationError("--scope is for service keys: add --service") }
            }
        }

        func run() async throws {
            if service {
                let created = try await withOperations(database) { try await $0.createServiceKey(name: name, scopes: scope) }
                if json { try printJSON(created) } else { print(created.key) }
                return
            }
            if let team, UUID(uuidString: team) == nil { throw ValidationError("--team must be a team id") }
            let created = try await withOperations(database) { operations in
                try await operations.createKey(user: user ?? "", team: team, limit: limit, name: name)
            }
            if json { try printJSON(created) } else { print(created.key) }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the service keys (--service), revoked ones too; never the keys themselves.")
        @Flag(help: "List service keys (the only listing here: a user's API keys are listed by GET /v1/api-keys).") var service = false
        @Flag(help: "Print the result as JSON.") var json = false
        @OptionGroup var database: DatabaseOptions

        func validate() throws {
            guard service else { throw ValidationError("give --service: users list their own API keys with GET /v1/api-keys") }
        }

        func run() async throws {
            let keys = try await withOperations(database) { try await $0.serviceKeys() }
            if json { try printJSON(keys); return }
            if keys.isEmpty { print("No service keys. Create one with `tally keys create --service --name NAME --scope SCOPE`.") }
            let format = ISO8601DateFormatter()
            for key in keys {
                let state = key.revokedAt.map { "revoked \(format.string(from: $0))" } ?? (key.lastUsedAt.map { "last used \(format.string(from: $0))" } ?? "never used")
                print("\(key.id.uuidString.lowercased())  \(key.prefix)…  \(key.name)  [\(key.scopes.map(\.rawValue).joined(separator: " "))]  \(state)")
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a service key at once (--service): its next request is refused.",
            discussion: "A revoked key stays listed (and in the audit log); it cannot be restored: create another.")
        @Argument(help: ArgumentHelp("The service key's id (tally keys list --service).", valueName: "id")) var id: String
        @Flag(help: "Revoke a service key (users revoke their API keys with DELETE /v1/api-keys/{id}).") var service = false
        @Flag(help: "Do it without asking.") var yes = false
        @OptionGroup var database: DatabaseOptions

        func validate() throws {
            guard service else { throw ValidationError("give --service: users revoke their own API keys with DELETE /v1/api-keys/{id}") }
            guard UUID(uuidString: id) != nil else { throw ValidationError("give the service key's id, such as 3f2a… (tally keys list --service)") }
        }

        func run() async throws {
            guard try confirm("Revoke service key \(id)? The backend using it is refused from its next request.", yes: yes) else {
                throw ExitCode.failure
            }
            try await withOperations(database) { try await $0.revokeServiceKey(id) }
            print("Revoked service key \(id).")
        }
    }
}

extension DB {
    struct AuditCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "audit",
            abstract: "Prove the ledger: every account's balance equals its ledger and its grants, held equals its open holds, and nothing is negative.",
            discussion: "Exit status 1 with the accounts that fail.")
        @Flag(help: "Print the result as JSON.") var json = false
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            let report = try await withCreditsDatabase(database) { client in try await Audit.run(client, logger: commandQueries.logger) }
            if json {
                try printJSON(report)
            } else if report.ok {
                print("All \(report.accounts) account(s) balance with their ledger and grants.")
            } else {
                printTable([["ACCOUNT", "PROBLEM"]] + report.failures.map { [$0.accountID.uuidString.lowercased(), $0.problem] })
                print("\(report.failures.count) problem(s) in \(report.accounts) account(s).")
            }
            if !report.ok { throw ExitCode.failure }
        }
    }
}
