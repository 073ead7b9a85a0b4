import Foundation
import Synchronization
import Testing
import TallyPostgres

@Suite struct TimerWheelTests {
    /// Timers fire at their time or up to a few ticks after it, never before; cancelled ones never fire and
    /// leave nothing behind, however many were set.
    @Test func timersFireAfterTheirTimeAndCancelledOnesNever() async throws {
        let wheel = TimerWheel(tick: .milliseconds(10), slots: 64)
        let started = ContinuousClock.now
        let fired = Mutex<[Int: Duration]>([:])
        var timers: [TimerWheel.Timer] = []
        // Delays from 0 to 1.2 s: some shorter than a turn of the wheel (640 ms), some longer.
        for i in 0..<40 {
            timers.append(wheel.schedule(in: .milliseconds(i * 30)) { fired.withLock { $0[i] = ContinuousClock.now - started } })
        }
        // Cancel every odd one, and 10,000 more set and cancelled at once, as answered requests do.
        for i in stride(from: 1, to: 40, by: 2) { wheel.cancel(timers[i]) }
        for _ in 0..<10_000 { wheel.cancel(wheel.schedule(in: .seconds(30)) { Issue.record("a cancelled timer fired") }) }
        try await Task.sleep(for: .milliseconds(1_200 + 500))
        let times = fired.withLock { $0 }
        #expect(Set(times.keys) == Set(stride(from: 0, to: 40, by: 2)), "fired: \(times.keys.sorted())")
        for (i, at) in times {
            // Never early; late by at most a few ticks plus the machine's scheduling (bounded loosely: CI is busy).
            #expect(at >= .milliseconds(i * 30) && at < .milliseconds(i * 30 + 400), "timer \(i) fired at \(at)")
        }
        #expect(wheel.pending == 0)
    }
}
