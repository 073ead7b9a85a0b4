import Foundation
import PostgresNIO
import TallyPostgres

/// Least privilege for Tally's database: an owner role that owns the schema and runs migrations (DDL), and an
/// application role the server runs as, with only the DML Tally's routes need: no DDL, and on the ledger and
/// the admin audit log only SELECT and INSERT (the triggers refuse rewrites whoever asks; the grants mean the
/// application role is refused before it gets that far).
public enum DatabaseRoles {
    /// The tables the application may only read and append to.
    public static let appendOnlyTables = ["credit_transactions", "admin_audit"]
    /// The schemas Tally's migrations and tools create objects in.
    public static let schemas = ["public", "drizzle", "tally_migrate", "tally_archive"]
    public static let standardOwner = "tally_owner"
    public static let standardApplication = "tally_app"

    /// Creates the role `name` when missing, as a plain login role (no superuser, no CREATEDB/CREATEROLE, no
    /// BYPASSRLS); sets its password when `password` is given. Whether it was created.
    @discardableResult
    public static func ensureLoginRole(_ name: String, password: String?, on connection: DatabaseConnection) async throws -> Bool {
        var exists = false
        for try await _ in try await connection.query("SELECT 1 FROM pg_roles WHERE rolname = \(name)") { exists = true }
        let role = quoteIdentifier(name)
        if !exists { try await connection.run("CREATE ROLE \(role) LOGIN") }
        try await connection.run("ALTER ROLE \(role) WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS")
        if let password { try await setPassword(name, password, on: connection) }
        return !exists
    }

    public static func setPassword(_ name: String, _ password: String, on connection: DatabaseConnection) async throws {
        // ALTER ROLE takes no bind parameters: the password goes as a quoted literal (never logged).
        try await connection.run("ALTER ROLE \(quoteIdentifier(name)) PASSWORD '\(password.replacingOccurrences(of: "'", with: "''"))'")
    }

    /// Makes `owner` own Tally's schemas and every table, sequence and function in them, and lets it create
    /// objects in the database (migrations). Run as a superuser or the objects' current owner.
    public static func transferOwnership(to owner: String, on connection: DatabaseConnection) async throws {
        let role = quoteIdentifier(owner)
        try await connection.run("GRANT CREATE, CONNECT ON DATABASE \(quoteIdentifier(try await currentDatabase(connection))) TO \(role)")
        for schema in try await existingSchemas(connection) {
            let quoted = quoteIdentifier(schema)
            if schema == "public" {
                try await connection.run("GRANT USAGE, CREATE ON SCHEMA public TO \(role)")
            } else {
                try await connection.run("ALTER SCHEMA \(quoted) OWNER TO \(role)")
            }
            var statements: [String] = []
            for try await (kind, name) in try await connection.query(
                """
                SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END, c.relname::text
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = \(schema) AND c.relkind IN ('r', 'p', 'S', 'v', 'm')
                  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i'))
                ORDER BY 2
                """
            ).decode((String, String).self) { statements.append("ALTER \(kind) \(quoted).\(quoteIdentifier(name)) OWNER TO \(role)") }
            for try await signature in try await connection.query(
                "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = \(schema) ORDER BY 1"
            ).decode(String.self) { statements.append("ALTER ROUTINE \(signature) OWNER TO \(role)") }
            for statement in statements { try await connection.run(statement) }
        }
    }

    /// Grants `application` what the server needs and nothing more, on what exists now and (by default
    /// privileges of `owner`, the role that runs migrations) on what migrations create later.
    public static func grantApplication(_ application: String, owner: String, on connection: DatabaseConnection) async throws {
        let app = quoteIdentifier(application)
        let own = quoteIdentifier(owner)
        try await connection.run("GRANT CONNECT ON DATABASE \(quoteIdentifier(try await currentDatabase(connection))) TO \(app)")
        try await connection.run("REVOKE CREATE ON SCHEMA public FROM \(app)")
        // Schemas and tables the owner makes later (the migration history's, on a first migration) are readable.
        try await connection.run("ALTER DEFAULT PRIVILEGES FOR ROLE \(own) GRANT USAGE ON SCHEMAS TO \(app)")
        try await connection.run("ALTER DEFAULT PRIVILEGES FOR ROLE \(own) GRANT SELECT ON TABLES TO \(app)")
        for schema in try await existingSchemas(connection) {
            let quoted = quoteIdentifier(schema)
            try await connection.run("GRANT USAGE ON SCHEMA \(quoted) TO \(app)")
            if schema == "public" {
                try await connection.run("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO \(app)")
                try await connection.run("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO \(app)")
                try await connection.run("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO \(app)")
                try await connection.run("ALTER DEFAULT PRIVILEGES FOR ROLE \(own) IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO \(app)")
                try await connection.run("ALTER DEFAULT PRIVILEGES FOR ROLE \(own) IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO \(app)")
            } else {
                // Migration history and bookkeeping: the server reads them (readiness), never writes.
                try await connection.run("GRANT SELECT ON ALL TABLES IN SCHEMA \(quoted) TO \(app)")
                try await connection.run("ALTER DEFAULT PRIVILEGES FOR ROLE \(own) IN SCHEMA \(quoted) GRANT SELECT ON TABLES TO \(app)")
            }
        }
        try await keepAppendOnly(for: application, on: connection)
    }

    /// Takes UPDATE, DELETE and TRUNCATE on the append-only tables that exist from `role`: after migrations
    /// that create them (default privileges would have granted them), run by their owner.
    public static func keepAppendOnly(for role: String, on connection: DatabaseConnection) async throws {
        for table in appendOnlyTables {
            var exists = false
            for try await _ in try await connection.query("SELECT 1 WHERE to_regclass(\("public." + table)) IS NOT NULL") { exists = true }
            if exists { try await connection.run("REVOKE UPDATE, DELETE, TRUNCATE ON public.\(quoteIdentifier(table)) FROM \(quoteIdentifier(role))") }
        }
    }

    /// What is wrong with serving as the connection's role: a superuser, the owner of Tally's tables, able to
    /// run DDL, or able to rewrite the ledger. Empty for a role made by `tally db roles`.
    public static func warnings(_ connection: DatabaseConnection) async throws -> [String] {
        var warnings: [String] = []
        for try await (role, superuser, owns, ddl, rewrite) in try await connection.query(
            """
            SELECT current_user::text, r.rolsuper,
                   pg_has_role(current_user, c.relowner, 'MEMBER'),
                   has_schema_privilege('public', 'CREATE') OR has_database_privilege(current_database(), 'CREATE'),
                   has_table_privilege(c.oid, 'UPDATE') OR has_table_privilege(c.oid, 'DELETE') OR has_table_privilege(c.oid, 'TRUNCATE')
            FROM pg_roles r, pg_class c
            WHERE r.rolname = current_user AND c.oid = to_regclass('public.credit_transactions')
            """
        ).decode((String, Bool, Bool, Bool, Bool).self) {
            if superuser {
                warnings.append("the server runs as \(role), a superuser: it may change or drop anything; run `tally db roles` and serve as its application role")
                continue
            }
            if owns { warnings.append("the server runs as \(role), which owns Tally's tables (it may alter or drop them); serve as an application role (`tally db roles`)") }
            if ddl { warnings.append("the server's role \(role) may create objects in the database (DDL); serve as an application role (`tally db roles`)") }
            if rewrite { warnings.append("the server's role \(role) holds UPDATE, DELETE or TRUNCATE on the ledger (credit_transactions); serve as an application role (`tally db roles`)") }
        }
        return warnings
    }

    static func currentDatabase(_ connection: DatabaseConnection) async throws -> String {
        for try await name in try await connection.query("SELECT current_database()::text").decode(String.self) { return name }
        return ""
    }

    static func existingSchemas(_ connection: DatabaseConnection) async throws -> [String] {
        var found: [String] = []
        for try await name in try await connection.query(
            "SELECT nspname::text FROM pg_namespace WHERE nspname = ANY(\(schemas)) ORDER BY nspname = 'public' DESC, nspname"
        ).decode(String.self) { found.append(name) }
        return found
    }
}

extension DatabaseConnection {
    /// One statement of SQL text without parameters (role and grant statements take none).
    func run(_ sql: String) async throws {
        try await execute(PostgresQuery(unsafeSQL: sql))
    }
}
