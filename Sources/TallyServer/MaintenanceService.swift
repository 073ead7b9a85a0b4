import Logging
import ServiceLifecycle
import TallyCredits
import TallyPostgres

/// The server's background work, every `interval`: releases holds past their expiry (reads release them
/// lazily too, so this only keeps idle accounts' `held` current) and deletes idempotency keys past their
/// retention, login-throttle counts untouched for a day, sessions past their end or idle timeout, accounts never
/// verified, and outbox messages a week old; sends `grant.expiring` for grants about to expire (once each), and
/// issues the recurring grants that are due (missed periods too). A failed round is logged and retried next round.
struct MaintenanceService: Service {
    let ledger: Ledger
    let idempotency: Idempotency
    let auth: Auth
    let interval: Duration
    var grantExpiringNotice: Duration = WebhookSettings().grantExpiringNotice
    let logger: Logger

    func run() async throws {
        try await repeatRounds(every: interval, work: "maintenance", logger: logger) { context in
            while try await ledger.releaseExpiredHolds(context: context) > 0 {}
            try await idempotency.purgeExpired(context: context)
            try await auth.throttle.purgeStale(context: context)
            try await auth.purgeEndedSessions(context: context)
            try await auth.purgeUnverified(context: context)
            try await Outbox.purge(database: auth.database, context: context)
            while try await BalanceAlerts(database: auth.database).noticeExpiringGrants(ahead: grantExpiringNotice, context: context) > 0 {}
            while try await RecurringGrants(database: auth.database).issueDue(context: context) > 0 {}
        }
    }
}

/// Runs `round` every `interval` until graceful shutdown, its statements logged with `tally.work` = `work`.
/// Shutdown cancels a round in progress too (a round waiting on an unreachable database must not hold the
/// server open); a failed round is logged and the next one runs as usual.
func repeatRounds(
    every interval: Duration, work: String, logger: Logger, _ round: @escaping @Sendable (QueryContext) async throws -> Void
) async throws {
    var marked = logger
    marked[metadataKey: "tally.work"] = .string(work)
    let logger = marked
    try? await cancelWhenGracefulShutdown {
        while !Task.isCancelled {
            do {
                try await round(QueryContext(logger: logger))
            } catch where !Task.isCancelled {
                logger.warning("\(work) round failed; retrying next round", metadata: ["error": "\(describeForLog(error))"])
            }
            try await Task.sleep(for: interval)
        }
    }
}
