import Foundation
import NIOPosix

/// bcrypt runs on NIO's thread pool, one hash per thread at a time; this lets `width` run and `queue` wait,
/// and answers anyone beyond at once (`serverBusy`, 503 with `Retry-After`) instead of letting a flood of
/// logins queue behind each other until every real user's login times out. One per `Auth` (per server).
public actor BcryptGate {
    /// One hash per core at a time, 32 waiting.
    public static func standard() -> BcryptGate { BcryptGate(width: max(1, ProcessInfo.processInfo.activeProcessorCount), queue: 32) }

    private let width: Int
    private let queue: Int
    private var running = 0
    private var waiting: [CheckedContinuation<Void, Never>] = []

    public init(width: Int, queue: Int) {
        self.width = width
        self.queue = queue
    }

    /// Runs `work` on NIO's thread pool when a place is free; `serverBusy` when `queue` are already waiting.
    public func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        if running < width {
            running += 1
        } else {
            guard waiting.count < queue else {
                throw CreditsError(.serverBusy, "too many logins and sign-ups at once; retry in a second", retryAfter: 1)
            }
            await withCheckedContinuation { waiting.append($0) }
        }
        defer {
            if waiting.isEmpty { running -= 1 } else { waiting.removeFirst().resume() }
        }
        return try await NIOThreadPool.singleton.runIfActive(work)
    }
}
