import Foundation
import Logging
import PostgresNIO
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyCredits

// The helpers TallyCreditsTests share: the domain API driven directly, on a test's own database.

/// What the tests' calls into the credits store run with.
let testQueries = QueryContext(logger: Logger(label: "tally.tests"))

/// A user with `credits` and an API key, made through the domain API.
func funded(_ client: PostgresClient, _ email: String, credits: Int64) async throws -> APIKeyPrincipal {
    let user = try await Auth(client: client, bcryptCost: 4).createUser(email: email, password: "password123", name: nil, admin: false, context: testQueries)
    _ = try await Ledger(client: client).grant(to: .user(user.id), amount: credits, description: "test", by: .operator("test"), context: testQueries)
    let key = try await APIKeys(client: client).create(name: "k", teamID: nil, creditLimit: nil, by: user, context: testQueries)
    return try await APIKeys(client: client).authenticate(key.key, context: testQueries)
}

/// Runs `body` while `ledger`'s consume lanes run (as the application's service group runs them).
func withRunning<T: Sendable>(_ ledger: Ledger, _ body: () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await ledger.run() }
        defer { group.cancelAll() }
        try await waitUntilRunning(ledger)
        return try await body()
    }
}

/// Until the lanes take spends (a few yields; a second at most).
func waitUntilRunning(_ ledger: Ledger) async throws {
    let deadline = ContinuousClock.now + .seconds(1)
    while !ledger.batcher.isRunning {
        try #require(ContinuousClock.now < deadline, "the consume lanes did not start")
        try await Task.sleep(for: .milliseconds(1))
    }
}

/// The one integer `query` answers (0 when it answers no row).
func scalarValue(_ client: PostgresClient, _ query: PostgresQuery) async throws -> Int64 {
    var value: Int64 = 0
    for try await v in try await client.query(query).decode(Int64.self) { value = v }
    return value
}
