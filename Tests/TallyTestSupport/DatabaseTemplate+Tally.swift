import TallyCredits

extension DatabaseTemplate {
    /// Tally's schema, migrated once per run (and again only when the migration files change).
    public static let tally = DatabaseTemplate(name: "tally", version: SchemaGate.fingerprint) { db in
        try await SchemaGate.prepare(db, apply: true)
    }
}
