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

    /// Waits up to `timeout` for the lock; `onWait` is called once if another process holds it.
    init(path: String, timeout: Duration = .seconds(180), onWait: () -> Void = {}) throws(TallyPostgresError) {
        fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw TallyPostgresError(.clusterUnreadable, "could not open the lock file \(path): \(String(cString: strerror(errno))); check the folder's permissions")
        }
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var told = false
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR else {
                close(fd)
                throw TallyPostgresError(.clusterUnreadable, "could not lock \(path): \(String(cString: strerror(errno)))")
            }
            if !told {
                onWait()
                told = true
            }
            guard clock.now < deadline else {
                close(fd)
                throw TallyPostgresError(
                    .clusterStart,
                    "another tally process has held \(path) for over \(timeout); if none is running, remove that file and retry"
                )
            }
            usleep(50_000)
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
