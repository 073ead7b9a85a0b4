import Foundation
import PostgresNIO
import TallyTestSupport
import Testing
@testable import TallyPostgres

@Suite struct DatabaseClientTests {
    /// A one-shot connection whose task is cancelled at any moment of its login (as a migration's lease
    /// renewal is when the migration ends first) is closed, never dropped open: postgres-nio stops a debug
    /// build that drops one, and a release build would leave the session on the server.
    @Test(.freshDatabase) func aConnectionCancelledWhileItLogsInIsClosed() async throws {
        let db = try TestDatabase.current
        let started = ContinuousClock.now
        try await withSingleConnection(db, logger: LocalCluster.quietLogger) { _ in }
        let login = ContinuousClock.now - started
        var completed = 0
        for _ in 0..<400 {
            let task = Task { try await withSingleConnection(db, logger: LocalCluster.quietLogger) { _ in } }
            // Anywhere from before the first byte to after the login.
            try await Task.sleep(for: login * Double.random(in: 0...1.5))
            task.cancel()
            if case .success = await task.result { completed += 1 }
        }
        // Both sides of the race were run: some logins finished before the cancel, some did not.
        #expect(completed > 0 && completed < 400, "\(completed) of 400 completed; a login takes \(login)")

        let leftOpen = try await withSingleConnection(db, logger: LocalCluster.quietLogger) { connection in
            try await TestDatabase.sessionsLeft(on: db.database, connection, within: .seconds(10))
        }
        #expect(leftOpen == 0, "sessions left open on the server")
    }
}
