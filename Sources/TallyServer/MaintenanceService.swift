import Logging
import ServiceLifecycle
import TallyCredits

/// The server's background work, every `interval`: releases holds past their expiry (reads release them
/// lazily too, so this only keeps idle accounts' `held` current) and deletes idempotency keys past their
/// retention. A failed round is logged and retried next round.
struct MaintenanceService: Service {
    let ledger: Ledger
    let idempotency: Idempotency
    let interval: Duration
    let logger: Logger

    func run() async throws {
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            do {
                while try await ledger.releaseExpiredHolds() > 0 {}
                try await idempotency.purgeExpired()
            } catch {
                logger.warning("maintenance round failed; retrying next round", metadata: ["error": "\(error)"])
            }
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            } catch {
                return
            }
        }
    }
}
