import TallySchema

/// The credits domain: accounts, grants, the ledger, holds, users and API keys, and their PostgreSQL store.
public enum TallyCredits {
    /// Tally's own migrations folder (bundled), the default of `tally migrate`.
    public static var migrationsFolder: String { TallySchema.folder }
}
