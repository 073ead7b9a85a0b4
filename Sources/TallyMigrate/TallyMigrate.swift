/// Tally's migration engine: Drizzle-compatible migration folders and history, planning, lint,
/// introspection, orphans and backups. It works on any PostgreSQL database and knows nothing of credits.
public enum TallyMigrate {}
