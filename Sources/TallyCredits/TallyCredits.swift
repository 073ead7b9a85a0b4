/// The credits domain: accounts, grants, the ledger, holds, users and API keys, and their PostgreSQL store.
public enum TallyCredits {}
