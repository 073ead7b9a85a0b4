import Foundation
import PostgresNIO
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyCredits

/// The operator commands' work, called as a library (the commands themselves are tested as processes in
/// TallyCLITests).
@Suite struct OperatorOperationsTests {
    @Test(.freshDatabase(from: .tally)) func usersGrantsAndKeysByTheNamesAnOperatorUses() async throws {
        let db = try TestDatabase.current
        try await withPostgresClient(db) { client in
            let operations = Operations(client: client, context: testQueries)
            let admin = try await operations.createUser(email: "Ops@Example.com", password: "password123", name: "Ops", admin: true)
            #expect(admin.isAdmin)
            await #expect { try await operations.createUser(email: "ops@example.com", password: "password123", name: nil, admin: false) } throws: {
                ($0 as? CreditsError)?.code == .emailTaken
            }

            // By email (any case) or by id; the grant lands in the ledger.
            let byEmail = try await operations.grant(user: "OPS@example.com", team: nil, amount: 100, description: "welcome")
            #expect(byEmail.balance == 100)
            let byID = try await operations.grant(user: admin.id.uuidString, team: nil, amount: 5, expires: "2099-01-01T00:00:00Z", description: "more")
            #expect(byID.balance == 105)
            #expect(byID.expiresAt == ISO8601DateFormatter().date(from: "2099-01-01T00:00:00Z"))

            for (user, team, expires, message) in [
                ("nobody@example.com", nil, nil, "no user nobody@example.com"),
                ("ops@example.com", nil, "tomorrow", "--expires must be an ISO 8601 time"),
                (nil, "not-a-team", nil, "--team must be a team id"),
                ("ops@example.com", UUID().uuidString, nil, "exactly one of --user and --team"),
            ] as [(String?, String?, String?, String)] {
                await #expect { try await operations.grant(user: user, team: team, amount: 1, expires: expires, description: "x") } throws: {
                    "\($0)".contains(message)
                }
            }

            let key = try await operations.createKey(user: "ops@example.com", team: nil, limit: 50, name: "cli")
            #expect(key.key.hasPrefix("tly_"))
            #expect(key.apiKey.creditLimit == 50)
            let principal = try await APIKeys(client: client).authenticate(key.key, context: testQueries)
            #expect(principal.userID == admin.id)
            #expect(try await Audit.run(client, logger: testQueries.logger).ok)
        }
    }
}
