import Foundation
import Synchronization
import Testing
@testable import TallyServer

/// The shared queue of request deadlines: a cancelled deadline never fires, one left fires once its time has
/// passed, and cancelled entries do not pile up.
@Suite struct DeadlineQueueTests {
    @Test func onlyTheDeadlinesLeftFireAndNotBeforeTheirTime() async throws {
        let limit = Duration.milliseconds(80)
        let fired = Mutex<[Int]>([])
        let started = ContinuousClock.now
        var deadlines: [Deadline] = []
        for index in 0..<20_000 {
            deadlines.append(Deadline(in: limit) { fired.withLock { $0.append(index) } })
        }
        for (index, deadline) in deadlines.enumerated() where index != 7 && index != 19_999 { deadline.cancel() }
        var firedAt: Duration?
        while ContinuousClock.now - started < .seconds(5) {
            if fired.withLock({ $0.count }) == 2 { firedAt = ContinuousClock.now - started; break }
            try await Task.sleep(for: .milliseconds(5))
        }
        try await Task.sleep(for: .milliseconds(200))
        #expect(fired.withLock { $0.sorted() } == [7, 19_999])
        let elapsed = try #require(firedAt, "the two deadlines left fired")
        #expect(elapsed >= limit && elapsed < .seconds(3), "fired after \(elapsed)")
        // Later deadlines drop the cancelled ones: the queue holds about what is in flight.
        for _ in 0..<5_000 { Deadline(in: limit) {}.cancel() }
        #expect(DeadlineQueue.for(limit).pending < 5_000)
    }
}
