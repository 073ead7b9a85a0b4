import NIOCore
import NIOPosix
import Synchronization

/// Timers that are set and cancelled far more often than they fire: every request's deadline, every
/// connection's header and idle clocks, every wait for a database connection. Setting or cancelling one is a
/// lock and a dictionary insert or remove; no task is started and no thread is woken. One repeating task on an event loop advances the wheel
/// every `tick` and fires what has fallen due, so a timer fires at its time or up to one tick after it,
/// never before. (An event-loop timer per request cost the no-route path about a tenth of its CPU in
/// scheduling, cancelling and waking the loop that held it.)
public final class TimerWheel: Sendable {
    /// The server's wheel: 20 ms ticks, 4,096 slots (a timer further than 82 s away waits out whole turns).
    public static let shared = TimerWheel(tick: .milliseconds(20), slots: 4096)

    /// A timer set on the wheel, for `cancel`.
    public struct Timer: Sendable {
        fileprivate let slot: Int
        fileprivate let id: UInt64
    }

    private struct Pending {
        var dueTick: Int64
        var fire: @Sendable () -> Void
    }

    private struct State {
        var slots: [[UInt64: Pending]]
        var nextID: UInt64 = 0
        /// The last tick whose slot was fired.
        var done: Int64 = 0
        var running = false
    }

    private let state: Mutex<State>
    private let tick: Duration
    private let origin = ContinuousClock.now

    public init(tick: Duration, slots: Int) {
        self.tick = tick
        self.state = Mutex(State(slots: Array(repeating: [:], count: slots)))
    }

    /// Runs `fire` once `delay` has passed (on the wheel's event loop; keep it short), unless cancelled first.
    public func schedule(in delay: Duration, _ fire: @escaping @Sendable () -> Void) -> Timer {
        // Rounded up: the tick that starts at or after the moment it falls due.
        let dueTick = Int64(((ContinuousClock.now - origin + delay) / tick).rounded(.up))
        let (timer, start) = state.withLock { state -> (Timer, Bool) in
            state.nextID &+= 1
            let slot = Int(max(dueTick, state.done + 1) % Int64(state.slots.count))
            state.slots[slot][state.nextID] = Pending(dueTick: dueTick, fire: fire)
            defer { state.running = true }
            return (Timer(slot: slot, id: state.nextID), !state.running)
        }
        if start { run() }
        return timer
    }

    /// The timer will not fire (unless it already has).
    public func cancel(_ timer: Timer) {
        state.withLock { _ = $0.slots[timer.slot].removeValue(forKey: timer.id) }
    }

    /// Timers set and neither fired nor cancelled.
    public var pending: Int { state.withLock { $0.slots.reduce(0) { $0 + $1.count } } }

    private func run() {
        let tick = TimeAmount(self.tick)
        MultiThreadedEventLoopGroup.singleton.any().scheduleRepeatedTask(initialDelay: tick, delay: tick) { [self] _ in advance() }
    }

    /// Fires every timer of the ticks that have passed since the last call.
    private func advance() {
        let now = Int64(((ContinuousClock.now - origin) / tick).rounded(.down))
        let due = state.withLock { state -> [@Sendable () -> Void] in
            var due: [@Sendable () -> Void] = []
            while state.done < now {
                state.done += 1
                let slot = Int(state.done % Int64(state.slots.count))
                guard !state.slots[slot].isEmpty else { continue }
                let fallen = state.slots[slot].filter { $0.value.dueTick <= state.done }
                for (id, pending) in fallen {
                    state.slots[slot].removeValue(forKey: id)
                    due.append(pending.fire)
                }
            }
            return due
        }
        for fire in due { fire() }
    }
}
