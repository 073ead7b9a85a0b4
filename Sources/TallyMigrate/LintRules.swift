/// Every rule squawk (2.70) knows, under squawk's name, with what Tally makes of it, and Tally's own rules.
/// The README's rule table is this list; `LintCatalogueTests` keeps the two in step and checks every squawk
/// name against the `squawk` program.
public struct LintRule: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable {
        /// A lock held while the table is scanned, rewritten or an index built: judged by the table's rows.
        case lock
        /// A change that can break code still using the old shape (both services share the database).
        case compatibility
        /// A statement that fails, or does what the author cannot have meant.
        case correctness
        /// How the migration's transaction and settings behave.
        case transaction
        /// A column type or form a schema does better without.
        case style
    }

    public var name: String
    public var kind: Kind
    /// Reported unless `--exclude`d; the others only with `--include` (squawk's default set).
    public var onByDefault: Bool
    /// False when the rule does not apply to migrations Tally runs; `tally` then says why.
    public var applies: Bool
    /// What Tally checks, or why the rule does not apply.
    public var tally: String
    /// Squawk has the rule (Tally's own rules: false).
    public var squawk: Bool = true
}

public enum LintRules {
    public static func named(_ name: String) -> LintRule? { all.first { $0.name == name } }

    /// Rules `plan` runs unless told otherwise.
    public static var defaultSet: Set<String> { Set(all.filter { $0.applies && $0.onByDefault }.map(\.name)) }

    private static func rule(_ name: String, _ kind: LintRule.Kind, on: Bool = true, _ tally: String) -> LintRule {
        LintRule(name: name, kind: kind, onByDefault: on, applies: true, tally: tally)
    }

    private static func notApplicable(_ name: String, _ kind: LintRule.Kind, on: Bool = true, _ why: String) -> LintRule {
        LintRule(name: name, kind: kind, onByDefault: on, applies: false, tally: why)
    }

    public static let all: [LintRule] = [
        // Locks, scans, rewrites: quiet on a table created by the pending migrations or holding no rows.
        rule("adding-field-with-default", .lock, "ADD COLUMN whose DEFAULT calls a function the live database marks volatile, or a STORED generated column: rewrites the table under ACCESS EXCLUSIVE"),
        rule("adding-foreign-key-constraint", .lock, "FOREIGN KEY without NOT VALID on a filled table: scans it while writes to both tables wait (info when Tally adds it online)"),
        rule("adding-not-nullable-field", .lock, "SET NOT NULL on a filled table: a scan under ACCESS EXCLUSIVE, unless the live table already has a validated CHECK (col IS NOT NULL)"),
        rule("adding-serial-primary-key-field", .lock, "ADD PRIMARY KEY without USING INDEX on a filled table: builds the index under ACCESS EXCLUSIVE"),
        rule("adding-required-field", .correctness, "NOT NULL column without a DEFAULT added to a table that has rows: the statement fails (error)"),
        rule("ban-alter-domain-with-add-constraint", .lock, "ALTER DOMAIN … ADD CONSTRAINT: scans every filled table with a column of the domain (named, with rows)"),
        rule("changing-column-type", .lock, "ALTER COLUMN … TYPE on a filled table: a rewrite under ACCESS EXCLUSIVE; info when the live column's type makes it a catalog-only change (varchar widened, or to text)"),
        rule("constraint-missing-not-valid", .lock, "CHECK or FOREIGN KEY without NOT VALID on a filled table, or VALIDATE in the transaction that added it NOT VALID"),
        rule("disallowed-unique-constraint", .lock, "ADD UNIQUE without USING INDEX on a filled table: builds the index under ACCESS EXCLUSIVE"),
        rule("require-concurrent-index-creation", .lock, "CREATE INDEX without CONCURRENTLY on a filled table: writes wait while it builds"),
        rule("require-concurrent-index-deletion", .lock, "DROP INDEX without CONCURRENTLY when the index's table (looked up live) has rows"),
        rule("require-concurrent-partition-detach", .lock, "DETACH PARTITION without CONCURRENTLY on a filled partitioned table"),
        rule("require-concurrent-reindex", .lock, "REINDEX without CONCURRENTLY on a filled table (or a whole schema or database)"),
        rule("prefer-repack", .lock, "VACUUM FULL or CLUSTER on a filled table: rewrites it under ACCESS EXCLUSIVE (squawk: from PostgreSQL 19, REPACK CONCURRENTLY; before it, pg_repack)"),
        // The migration's transaction and settings.
        rule("ban-concurrent-index-creation-in-transaction", .transaction, "CONCURRENTLY in a file with other statements: Tally runs such a file statement by statement (drizzle-kit's migrator, in one transaction, fails), so a later failure leaves the earlier statements applied"),
        rule("transaction-nesting", .transaction, "BEGIN, COMMIT or ROLLBACK in a migration Tally runs in its own transaction (error)"),
        rule("ban-uncommitted-transaction", .transaction, "BEGIN with no COMMIT after it in the file (error)"),
        rule("prefer-robust-stmts", .transaction, "in a migration run outside a transaction (CONCURRENTLY): CREATE INDEX without IF NOT EXISTS, DROP INDEX without IF EXISTS; a rerun after a failure stops on them. Transactional migrations roll back whole, so Tally stays quiet there"),
        rule("require-lock-timeout", .transaction, "no SET lock_timeout in a file that locks a filled table (info: Tally sets --lock-timeout itself; a tool running the file as written waits in the lock queue, blocking everything behind it)"),
        rule("require-statement-timeout", .transaction, "no SET statement_timeout in a file that scans, rewrites or indexes a filled table (info: Tally runs it under --statement-timeout when given)"),
        notApplicable("require-timeout-settings", .transaction, on: false, "squawk's older name for require-lock-timeout plus require-statement-timeout, which Tally reports; `-- tally:ignore require-timeout-settings` silences both"),
        // Compatibility: quiet on objects the pending migrations create (they do not exist in the live database).
        rule("ban-drop-column", .compatibility, "DROP COLUMN of a live table"),
        rule("ban-drop-table", .compatibility, "DROP TABLE of a live table (with its row count)"),
        rule("ban-drop-not-null", .compatibility, "DROP NOT NULL on a live table: readers that assume a value break"),
        rule("ban-drop-constraint", .compatibility, "DROP CONSTRAINT on a live table"),
        rule("ban-drop-default", .compatibility, "DROP DEFAULT on a live table: inserts that left the column out now write NULL or fail"),
        rule("ban-drop-generated-expression", .compatibility, "DROP EXPRESSION on a live table"),
        rule("ban-drop-view", .compatibility, "DROP VIEW of a live view"),
        rule("ban-drop-function", .compatibility, "DROP FUNCTION or PROCEDURE of a live one"),
        rule("ban-drop-type", .compatibility, "DROP TYPE of a live type"),
        rule("ban-drop-domain", .compatibility, "DROP DOMAIN of a live domain"),
        rule("ban-drop-schema", .compatibility, "DROP SCHEMA of a live schema"),
        rule("ban-drop-sequence", .compatibility, "DROP SEQUENCE of a live sequence"),
        rule("ban-drop-extension", .compatibility, "DROP EXTENSION of an installed extension"),
        rule("ban-drop-trigger", .compatibility, on: false, "DROP TRIGGER of a live trigger"),
        rule("ban-drop-policy", .compatibility, on: false, "DROP POLICY of a live policy"),
        rule("ban-drop-index", .compatibility, on: false, "DROP INDEX of a live index (queries that relied on it slow down)"),
        rule("ban-drop-database", .correctness, "DROP DATABASE in a migration (error)"),
        rule("ban-truncate-cascade", .compatibility, "TRUNCATE … CASCADE of a live table: empties every table that references it too"),
        rule("renaming-column", .compatibility, "RENAME COLUMN of a live table"),
        rule("renaming-table", .compatibility, "RENAME of a live table"),
        rule("renaming-object", .compatibility, "RENAME of any other live object (index, view, sequence, type, constraint, function, schema)"),
        rule("ban-set-schema", .compatibility, "SET SCHEMA of a live object"),
        rule("ban-alter-identity", .compatibility, "ADD, SET or DROP IDENTITY on a live table"),
        rule("ban-create-domain-with-constraint", .compatibility, "CREATE DOMAIN with a CHECK (info): adding or changing its constraints later scans every table that uses it"),
        rule("require-enum-value-ordering", .compatibility, "ADD VALUE without BEFORE or AFTER (info): the value sorts last, which ORDER BY on the enum then shows"),
        rule("ban-set-default", .compatibility, on: false, "SET DEFAULT on a live table"),
        rule("ban-disable-trigger", .compatibility, on: false, "DISABLE TRIGGER on a live table"),
        rule("ban-replica-identity", .compatibility, on: false, "REPLICA IDENTITY on a live table (logical replication)"),
        rule("ban-alter-row-level-security", .compatibility, on: false, "ENABLE, DISABLE or FORCE ROW LEVEL SECURITY on a live table"),
        rule("ban-new-write-restriction", .compatibility, on: false, "a new NOT NULL, CHECK, UNIQUE or FOREIGN KEY on a live table: writes that passed now fail"),
        rule("ban-add-column", .compatibility, on: false, "ADD COLUMN on a live table (for consumers that SELECT * into fixed shapes)"),
        rule("ban-add-enum-value", .compatibility, on: false, "ADD VALUE to a live enum (consumers with exhaustive matches)"),
        rule("ban-add-composite-attribute", .compatibility, on: false, "ADD ATTRIBUTE to a live composite type"),
        rule("ban-detach-inheritance", .compatibility, on: false, "NO INHERIT on a live table"),
        rule("ban-alter-sequence-values", .compatibility, on: false, "ALTER SEQUENCE (restart, increment, bounds) of a live sequence"),
        rule("ban-replace-view-function", .compatibility, on: false, "CREATE OR REPLACE of a live view or function"),
        rule("ban-alter-extension", .compatibility, on: false, "ALTER EXTENSION"),
        rule("ban-revoke", .compatibility, on: false, "REVOKE"),
        rule("ban-create-policy", .compatibility, on: false, "CREATE POLICY"),
        rule("ban-alter-policy-condition", .compatibility, on: false, "ALTER POLICY … USING or WITH CHECK"),
        rule("ban-alter-policy-roles", .compatibility, on: false, "ALTER POLICY … TO"),
        rule("ban-alter-function-options", .compatibility, on: false, "ALTER FUNCTION options (SECURITY DEFINER, volatility, settings)"),
        rule("ban-alter-view-options", .compatibility, on: false, "ALTER VIEW … SET or RESET options"),
        rule("ban-alter-role-options", .compatibility, on: false, "ALTER ROLE"),
        rule("ban-alter-database-options", .compatibility, on: false, "ALTER DATABASE"),
        rule("ban-alter-system-options", .compatibility, on: false, "ALTER SYSTEM"),
        notApplicable("ban-alter-generated-expression", .compatibility, on: false, "ALTER COLUMN … SET EXPRESSION is PostgreSQL 17 syntax; Tally parses as PostgreSQL 15, which refuses it at `validate` with the file and line"),
        // Correctness.
        rule("ban-duplicate-column-assignments", .correctness, "UPDATE … SET a = …, a = …: PostgreSQL refuses it (error)"),
        rule("identifier-too-long", .correctness, "a name over 63 bytes, which PostgreSQL silently truncates (error)"),
        // Style: the same on new and live tables, as info.
        rule("prefer-bigint-over-int", .style, "integer and serial columns (info): a credits ledger outgrows 2^31"),
        rule("prefer-bigint-over-smallint", .style, "smallint and smallserial columns (info)"),
        rule("prefer-identity", .style, "serial columns (info): GENERATED … AS IDENTITY instead"),
        rule("prefer-text-field", .style, "varchar(n) columns (info): text with a CHECK; shrinking a varchar later rewrites the table"),
        rule("prefer-timestamp-tz", .style, "timestamp without time zone columns (info)"),
        rule("ban-char-field", .style, "char(n) columns (info)"),
        rule("require-table-schema", .style, on: false, "CREATE or ALTER TABLE and CREATE INDEX with an unqualified table name"),
        // Tally's own.
        LintRule(name: "foreign-key-orphans", kind: .correctness, onByDefault: true, applies: true,
                 tally: "a foreign key the live table's rows violate: `up` would stop there (error, with the count and sample keys)", squawk: false),
        LintRule(name: "dynamic-sql", kind: .transaction, onByDefault: true, applies: true,
                 tally: "a DO block that runs EXECUTE of text built at run time, which no linter can see (info)", squawk: false),
    ]
}
