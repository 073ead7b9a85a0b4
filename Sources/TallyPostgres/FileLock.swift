import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An exclusive `flock` on a file, held until `unlock()` or deinit: serialises tally processes
/// that start, stop or create the same embedded cluster.
final class FileLock {
    private var fd: Int32

    private init(descriptor: Int32) {
        fd = descriptor
    }

    /// Waits up to `timeout` for the lock, blocking the thread between tries; `onWait` is called once if
    /// another process holds it. For callers that are not async (`stop`).
    convenience init(path: String, timeout: Duration = .seconds(180), onWait: () -> Void = {}) throws(TallyPostgresError) {
        var waiting = Attempts(path: path, deadline: .now + timeout, timeout: timeout)
        while true {
            switch try waiting.tryOnce() {
            case .locked(let descriptor):
                self.init(descriptor: descriptor)
                return
            case .held(let first):
                if first { onWait() }
                usleep(50_000)
            }
        }
    }

    /// The same, suspending the caller's task between tries instead of blocking a thread.
    static func acquire(path: String, timeout: Duration = .seconds(180), onWait: () -> Void = {}) async throws -> FileLock {
        var waiting = Attempts(path: path, deadline: .now + timeout, timeout: timeout)
        while true {
            switch try waiting.tryOnce() {
            case .locked(let descriptor):
                return FileLock(descriptor: descriptor)
            case .held(let first):
                if first { onWait() }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    /// Tries for the lock until a deadline.
    private struct Attempts {
        enum Outcome { case locked(Int32), held(first: Bool) }
        let path: String
        let deadline: ContinuousClock.Instant
        let timeout: Duration
        var fd: Int32 = -1
        var told = false

        mutating func tryOnce() throws(TallyPostgresError) -> Outcome {
            if fd < 0 {
                fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
                guard fd >= 0 else {
                    throw TallyPostgresError(.clusterUnreadable, "could not open the lock file \(path): \(String(cString: strerror(errno))); check the folder's permissions")
                }
            }
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { return .locked(fd) }
            guard errno == EWOULDBLOCK || errno == EINTR else {
                close(fd)
                throw TallyPostgresError(.clusterUnreadable, "could not lock \(path): \(String(cString: strerror(errno)))")
            }
            guard ContinuousClock.now < deadline else {
                close(fd)
                throw TallyPostgresError(
                    .clusterStart,
                    "another tally process has held \(path) for over \(timeout); if none is running, remove that file and retry"
                )
            }
            defer { told = true }
            return .held(first: !told)
        }
    }

    func unlock() {
        guard fd >= 0 else { return }
        flock(fd, LOCK_UN)
        close(fd)
        fd = -1
    }

    deinit { unlock() }
}
