import Foundation

/// Whether `up` backs the database up before it applies anything.
public enum BackupBeforeApplying: Sendable, Equatable {
    /// No backup (`--no-backup`).
    case skip
    /// The embedded development database: never backed up, and `up` says so.
    case embedded
    /// A `pg_dump` into this folder, named after the database and the time.
    case into(directory: String)
}

extension Migrator {
    /// `up`, first taking the backup `policy` asks for when something is pending (nothing is backed up when
    /// nothing would run, or on a dry run). `say` hears what was decided and where the backup went.
    public func up(
        to target: String? = nil, dryRun: Bool = false, backup policy: BackupBeforeApplying,
        say: @escaping @Sendable (String) -> Void = { _ in }
    ) async throws -> UpResult {
        let database = self.database
        return try await up(to: target, dryRun: dryRun) { pending in
            switch policy {
            case .skip:
                return
            case .embedded:
                say("No backup taken: the embedded development database is not backed up (use `tally db backup` to take one).")
            case .into(let directory):
                say("Backing up \(database.database) before applying \(pending.count) migration(s) (--no-backup skips this)…")
                let backup = try await Backup.create(database, to: Backup.defaultPath(for: database.database, in: directory))
                say("Backup: \(backup.path) (\(backup.entries) entries). Roll back with: tally db restore \(backup.path) --yes")
            }
        }
    }
}
