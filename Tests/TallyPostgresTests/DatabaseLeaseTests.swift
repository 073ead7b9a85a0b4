import Foundation
import PostgresNIO
import TallyTestSupport
import Testing
@testable import TallyPostgres

@Suite struct DatabaseLeaseTests {
    /// However many leases a connection serves, it is watched for closing once: the watch holds one entry per
    /// connection the pool opened (a callback per lease would pile up on the connection until it closed).
    /// And a lease that finds every connection taken waits `DatabaseWait.limit`, no longer, then is refused.
    @Test(.freshDatabase) func manyLeasesLeaveOneWatchPerConnectionAndAWaitEndsAtItsLimit() async throws {
        let db = try TestDatabase.current
        try await withPostgresClient(db, maximumConnections: 2, logger: LocalCluster.quietLogger) { client in
            let database = Database(client)
            let logger = LocalCluster.quietLogger
            var answered = 0
            try await withThrowingTaskGroup(of: Int.self) { group in
                for i in 0..<300 {
                    if i >= 8, let one = try await group.next() { answered += one }
                    group.addTask {
                        try await database.leased(logger: logger) { connection in
                            var n = 0
                            for try await value in try await connection.query("SELECT 1").decode(Int.self) { n += value }
                            return n
                        }
                    }
                }
                for try await one in group { answered += one }
            }
            #expect(answered == 300)
            #expect((1...2).contains(database.closeWatch.count), "watched: \(database.closeWatch.count)")

            // Both connections held: a third lease waits its limit, then is refused with nothing done.
            let releases = (0..<2).map { _ in AsyncStream<Void>.makeStream() }
            let (held, holder) = AsyncStream<Void>.makeStream()
            async let holding: Void = withThrowingTaskGroup(of: Void.self) { group in
                for (release, _) in releases {
                    group.addTask {
                        try await database.leased(logger: logger) { _ in
                            holder.yield()
                            for await _ in release { break }
                        }
                    }
                }
                try await group.waitForAll()
            }
            var iterator = held.makeAsyncIterator()
            _ = await iterator.next(); _ = await iterator.next()
            let started = ContinuousClock.now
            let refused = await DatabaseWait.$limit.withValue(.milliseconds(300)) {
                await Result(catching: { try await database.leased(logger: logger) { _ in } })
            }
            let waited = ContinuousClock.now - started
            for (_, releaser) in releases { releaser.finish() }
            try await holding
            guard case .failure(let error as TallyPostgresError) = refused else {
                Issue.record("a lease with every connection taken: \(refused)")
                return
            }
            #expect(error.code == .databaseUnavailable, "\(error)")
            #expect(waited >= .milliseconds(300) && waited < .seconds(5), "waited \(waited)")
            // Given back, the connections serve again.
            try await database.leased(logger: logger) { _ = try await $0.query("SELECT 1") }
        }
    }
}

extension Result where Failure == any Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
