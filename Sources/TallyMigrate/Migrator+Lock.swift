import Foundation
import PostgresNIO
import TallyPostgres

/// The runner lock: one runner at a time per history table, correct whether or not a transaction-mode pooler
/// (PgBouncer, Supabase, Neon…) sits between Tally and PostgreSQL.
///
/// A session advisory lock is not: behind such a pooler each statement outside a transaction may run on
/// another server connection, so the lock stays on a pooled connection, re-entrant for whoever lands there
/// next. Instead a runner holds a lease, a row of `tally_migrate.runner_leases` with its owner and an expiry,
/// taken and renewed by single statements (each its own transaction), renewed every third of its time to live
/// from a connection of its own while the runner works, and deleted at the end. A runner that died leaves a
/// lease that expires; the next runner takes it over. Each migration's transaction locks the lease row
/// (`FOR KEY SHARE`) and checks it still owns it before anything else, so even a runner that stalled past its
/// lease cannot apply what a newer runner applies: a takeover changes the owner, a key column (it is unique),
/// so it waits for that transaction, and the stalled runner stops at its next one. Renewing changes no key
/// column, so it goes on while a long migration's transaction runs.
struct RunnerLease: Sendable {
    let history: HistoryTable
    let owner = UUID()
    let timeToLive: Duration
    /// Who holds it, for the runner that waits: host, process and when.
    let holder = "\(ProcessInfo.processInfo.hostName) pid \(ProcessInfo.processInfo.processIdentifier)"

    private var seconds: Double { timeToLive.inSeconds }

    /// Creates the lease table when missing (several runners may start at once; see
    /// `MigrationBookkeeping.createSerialised`).
    static func ensureTable(on connection: DatabaseConnection) async throws {
        try await MigrationBookkeeping.createSerialised(on: connection, """
            CREATE SCHEMA IF NOT EXISTS tally_migrate;
            CREATE TABLE IF NOT EXISTS tally_migrate.runner_leases (
                history_table text PRIMARY KEY, owner uuid NOT NULL UNIQUE, holder text NOT NULL,
                acquired_at timestamptz NOT NULL DEFAULT now(), renewed_at timestamptz NOT NULL DEFAULT now(),
                expires_at timestamptz NOT NULL)
            """)
    }

    /// Takes the lease when it is free or expired; otherwise who holds it. A live lease is only read, never
    /// waited on; taking an expired one waits at most a second for a stalled holder's transaction.
    func tryAcquire(on connection: DatabaseConnection) async throws -> (acquired: Bool, tookOverFrom: String?, heldBy: String?) {
        var previous: (holder: String, expired: Bool)?
        for try await row in try await connection.query(
            "SELECT holder, expires_at < now() FROM tally_migrate.runner_leases WHERE history_table = \(history.description)"
        ).decode((String, Bool).self) { previous = row }
        if let previous, !previous.expired { return (false, nil, previous.holder) }
        var acquired = false
        do {
            try await connection.transaction {
                try await connection.execute("SET LOCAL lock_timeout = 1000")
                for try await _ in try await connection.query(
                    """
                    INSERT INTO tally_migrate.runner_leases (history_table, owner, holder, expires_at)
                    VALUES (\(history.description), \(owner), \(holder), now() + make_interval(secs => \(seconds)))
                    ON CONFLICT (history_table) DO UPDATE SET owner = excluded.owner, holder = excluded.holder,
                        acquired_at = now(), renewed_at = now(), expires_at = excluded.expires_at
                    WHERE runner_leases.expires_at < now()
                    RETURNING 1
                    """
                ) { acquired = true }
            }
        } catch let error as PSQLError where ["55P03", "23505"].contains(error.serverInfo?[.sqlState] ?? "") {
            // The expired lease's holder is still in a transaction (55P03, lock_not_available), or another
            // runner took the lease at the same moment (23505): not acquired this time.
        }
        if acquired { return (true, previous.map(\.holder), nil) }
        // Another runner took it just now: name it.
        for try await holder in try await connection.query(
            "SELECT holder FROM tally_migrate.runner_leases WHERE history_table = \(history.description)"
        ).decode(String.self) { return (false, nil, holder) }
        return (false, nil, previous?.holder)
    }

    /// Extends the lease; false when it is no longer this runner's.
    func renew(on connection: DatabaseConnection) async throws -> Bool {
        for try await _ in try await connection.query(
            """
            UPDATE tally_migrate.runner_leases SET renewed_at = now(), expires_at = now() + make_interval(secs => \(seconds))
            WHERE history_table = \(history.description) AND owner = \(owner) RETURNING 1
            """
        ) { return true }
        return false
    }

    /// Inside a migration's transaction: locks the lease row against a takeover until the transaction ends, and
    /// refuses to go on when the lease is no longer this runner's.
    func confirm(on connection: DatabaseConnection) async throws {
        for try await _ in try await connection.query(
            "SELECT 1 FROM tally_migrate.runner_leases WHERE history_table = \(history.description) AND owner = \(owner) FOR KEY SHARE"
        ) { return }
        throw MigrateError(
            .lockTimeout,
            "this runner lost its lease on \(history) (it did not renew it within \(timeToLive): the process stalled or lost the database), and another runner may have taken over; nothing more was applied. Run `tally migrate status`, then `tally migrate up` again")
    }

    func release(on connection: DatabaseConnection) async throws {
        try await connection.execute(
            "DELETE FROM tally_migrate.runner_leases WHERE history_table = \(history.description) AND owner = \(owner)")
    }
}

extension Migrator {
    /// Runs `body` holding the runner lease of the history table (see `RunnerLease`), on one connection; the
    /// lease is renewed from another connection while `body` runs.
    func withRunnerLock<T: Sendable>(_ body: (DatabaseConnection, RunnerLease) async throws -> T) async throws -> T {
        try await withSingleConnection(database, logger: logger) { connection in
            try await RunnerLease.ensureTable(on: connection)
            let lease = RunnerLease(history: historyTable, timeToLive: options.leaseTimeToLive)
            let clock = ContinuousClock()
            let deadline = clock.now + options.runnerWait
            var told = false
            while true {
                let attempt = try await lease.tryAcquire(on: connection)
                if attempt.acquired {
                    if let stale = attempt.tookOverFrom {
                        progress("Took over the migration lease on \(historyTable) from \(stale), which let it expire (the runner stopped).")
                    }
                    break
                }
                if !told {
                    progress("Another runner (\(attempt.heldBy ?? "unknown")) is migrating \(historyTable); waiting for it to finish.")
                    told = true
                }
                guard clock.now < deadline else {
                    throw MigrateError(.lockTimeout, "another runner (\(attempt.heldBy ?? "unknown")) held the migration lease on \(historyTable) for over \(options.runnerWait); see tally_migrate.runner_leases, and retry")
                }
                try await Task.sleep(for: .milliseconds(200))
            }
            do {
                let result = try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await keepRenewing(lease) }
                    defer { group.cancelAll() }
                    return try await body(connection, lease)
                }
                try? await lease.release(on: connection)
                return result
            } catch {
                try? await lease.release(on: connection)
                throw error
            }
        }
    }

    /// Renews `lease` every third of its time to live, on a connection of its own, until cancelled.
    private func keepRenewing(_ lease: RunnerLease) async throws {
        try await withSingleConnection(database, logger: logger) { connection in
            while !Task.isCancelled {
                try await Task.sleep(for: lease.timeToLive / 3)
                do {
                    if try await !lease.renew(on: connection) {
                        progress("The migration lease on \(historyTable) is no longer this runner's; it stops at its next step.")
                        return
                    }
                } catch where !(error is CancellationError) {
                    // A failed renewal is tried again; the lease lasts three renewals.
                    logger.warning("renewing the migration lease failed", metadata: ["error": "\(describe(error))"])
                }
            }
        }
    }
}
