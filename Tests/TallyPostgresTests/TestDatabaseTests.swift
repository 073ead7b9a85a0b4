import PostgresNIO
import Testing
import TallyTestSupport
@testable import TallyPostgres

@Suite struct TestDatabaseTests {
    @Test func eachTestGetsItsOwnEmptyDatabase() async throws {
        let (first, firstTables) = try await TestDatabase.withFreshDatabase { settings in
            try await withPostgresClient(settings) { client in
                _ = try await client.query("CREATE TABLE only_here (id int)")
                return (settings.database, try await Self.tableCount(client))
            }
        }
        let second = try await TestDatabase.withFreshDatabase { settings in
            try await withPostgresClient(settings) { client in
                (settings.database, try await Self.tableCount(client))
            }
        }
        #expect(first != second.0)
        #expect(firstTables == 1)
        #expect(second.1 == 0)

        // The first database was dropped afterwards.
        let admin = try await TestDatabase.adminSettings()
        let stillThere = try await withPostgresClient(admin) { client in
            var found = false
            for try await _ in try await client.query("SELECT 1 FROM pg_database WHERE datname = \(first)") { found = true }
            return found
        }
        #expect(!stillThere)
    }

    static func tableCount(_ client: PostgresClient) async throws -> Int {
        var count = 0
        for try await n in try await client.query("SELECT count(*)::int FROM pg_tables WHERE schemaname = 'public'").decode(Int.self) {
            count = n
        }
        return count
    }
}
