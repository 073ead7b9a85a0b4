import ArgumentParser
import TallyPostgres

@main
struct Tally: AsyncParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "tally",
        abstract: "Credits and API keys for API products, and safe PostgreSQL migrations.",
        discussion: """
            With no DATABASE_URL (or --database-url), Tally starts and reuses a private PostgreSQL \
            cluster under .tally/postgres. Set DATABASE_URL=postgres://user:password@host:5432/db to use \
            an existing server instead.
            """,
        version: "tally \(version)",
        subcommands: [Serve.self, Migrate.self, DB.self, Users.self, Credits.self, Keys.self, Smoke.self]
    )

    /// Runs the command; a database error reaches the user as the server's message, never a placeholder.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: DatabaseFailure.userFacing(error))
        }
    }
}
