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

    /// The `.freshDatabase` trait: a suite's tests each get a database of their own, empty, while they run.
    @Suite(.freshDatabase, .serialized) struct TheTrait {
        /// The database the first test saw, for the second to compare with.
        nonisolated(unsafe) static var seen: String?

        @Test func handsATestAnEmptyDatabase() async throws { try await check() }
        @Test func handsTheNextTestAnotherOne() async throws { try await check() }

        func check() async throws {
            let db = try TestDatabase.current
            try await withPostgresClient(db) { client in
                #expect(try await TestDatabaseTests.tableCount(client) == 0)
                _ = try await client.query("CREATE TABLE left_behind (id int)")
            }
            #expect(db.database != Self.seen)
            Self.seen = db.database
        }
    }

    @Test func aTestWithoutTheTraitIsToldToAddIt() {
        #expect { _ = try TestDatabase.current } throws: { "\($0)".contains(".freshDatabase") }
    }

    static func tableCount(_ client: PostgresClient) async throws -> Int {
        var count = 0
        for try await n in try await client.query("SELECT count(*)::int FROM pg_tables WHERE schemaname = 'public'").decode(Int.self) {
            count = n
        }
        return count
    }
}
