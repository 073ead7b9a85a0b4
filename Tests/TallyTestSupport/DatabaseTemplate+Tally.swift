import TallyCredits
import TallyPostgres

extension DatabaseTemplate {
    /// Tally's schema, migrated once per run (and again only when the migration files change), with the
    /// application role's grants (`DatabaseRoles`): servers under test run as that role, as in production.
    public static let tally = DatabaseTemplate(name: "tally", version: ((try? SchemaGate.fingerprint()) ?? "the bundled migrations are unreadable: building fails and says why") + "\nroles 1") { db in
        try await SchemaGate.prepare(db, apply: true)
        try await withSingleConnection(db) { connection in
            try await DatabaseRoles.ensureLoginRole(TallyApplication.role, password: TallyApplication.password, on: connection)
            try await DatabaseRoles.grantApplication(TallyApplication.role, owner: db.user, on: connection)
        }
    }
}

/// The application role of the test cluster (roles are the cluster's, grants each database's).
public enum TallyApplication {
    public static let role = DatabaseRoles.standardApplication
    public static let password = "tally-app-under-test"
}

extension ConnectionSettings {
    /// The same database, as Tally's application role: what servers under test connect as.
    public var asTallyApplication: ConnectionSettings {
        var settings = self
        settings.user = TallyApplication.role
        settings.password = TallyApplication.password
        return settings
    }
}
