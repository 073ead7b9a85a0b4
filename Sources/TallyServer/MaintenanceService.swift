import Logging
import ServiceLifecycle
import TallyCredits
import TallyPostgres

/// The server's background work, every `interval`: releases holds past their expiry (reads release them
/// lazily too, so this only keeps idle accounts' `held` current) and deletes idempotency keys past their
/// retention, login-throttle counts untouched for a day, and sessions past their end or idle timeout. A failed round is logged and retried next round.
struct MaintenanceService: Service {
    let ledger: Ledger
    let idempotency: Idempotency
    let auth: Auth
    let interval: Duration
    let logger: Logger

    func run() async throws {
        // Shutdown cancels a round in progress too: a round waiting on an unreachable database must not hold
        // the server open.
        var marked = self.logger
        marked[metadataKey: "tally.work"] = "maintenance"
        let logger = marked
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    while try await ledger.releaseExpiredHolds(context: QueryContext(logger: logger)) > 0 {}
                    try await idempotency.purgeExpired(context: QueryContext(logger: logger))
                    try await auth.throttle.purgeStale(context: QueryContext(logger: logger))
                    try await auth.purgeEndedSessions(context: QueryContext(logger: logger))
                } catch where !Task.isCancelled {
                    logger.warning("maintenance round failed; retrying next round", metadata: ["error": "\(describeForLog(error))"])
                }
                try await Task.sleep(for: interval)
            }
        }
    }
}
