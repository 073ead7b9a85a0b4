/// Every rule squawk (2.70) knows, under squawk's name, with what Tally makes of it, and Tally's own rules.
/// The README's rule table is this list; `LintCatalogueTests` keeps the two in step and checks every squawk
/// name against the `squawk` program.
public struct LintRule: Sendable, Codable, Equatable {
    /// A rule's name, squawk's where squawk has the rule: one case per entry of `LintRules.all`
    /// (`LintCorpusTests` checks both ways), so a finding cannot name a rule the catalogue lacks.
    public enum Name: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
        case addingFieldWithDefault = "adding-field-with-default"
        case addingForeignKeyConstraint = "adding-foreign-key-constraint"
        case addingNotNullableField = "adding-not-nullable-field"
        case addingSerialPrimaryKeyField = "adding-serial-primary-key-field"
        case addingRequiredField = "adding-required-field"
        case banAlterDomainWithAddConstraint = "ban-alter-domain-with-add-constraint"
        case changingColumnType = "changing-column-type"
        case constraintMissingNotValid = "constraint-missing-not-valid"
        case disallowedUniqueConstraint = "disallowed-unique-constraint"
        case requireConcurrentIndexCreation = "require-concurrent-index-creation"
        case requireConcurrentIndexDeletion = "require-concurrent-index-deletion"
        case requireConcurrentPartitionDetach = "require-concurrent-partition-detach"
        case requireConcurrentReindex = "require-concurrent-reindex"
        case preferRepack = "prefer-repack"
        case banConcurrentIndexCreationInTransaction = "ban-concurrent-index-creation-in-transaction"
        case transactionNesting = "transaction-nesting"
        case banUncommittedTransaction = "ban-uncommitted-transaction"
        case preferRobustStmts = "prefer-robust-stmts"
        case requireLockTimeout = "require-lock-timeout"
        case requireStatementTimeout = "require-statement-timeout"
        case requireTimeoutSettings = "require-timeout-settings"
        case banDropColumn = "ban-drop-column"
        case banDropTable = "ban-drop-table"
        case banDropNotNull = "ban-drop-not-null"
        case banDropConstraint = "ban-drop-constraint"
        case banDropDefault = "ban-drop-default"
        case banDropGeneratedExpression = "ban-drop-generated-expression"
        case banDropView = "ban-drop-view"
        case banDropFunction = "ban-drop-function"
        case banDropType = "ban-drop-type"
        case banDropDomain = "ban-drop-domain"
        case banDropSchema = "ban-drop-schema"
        case banDropSequence = "ban-drop-sequence"
        case banDropExtension = "ban-drop-extension"
        case banDropTrigger = "ban-drop-trigger"
        case banDropPolicy = "ban-drop-policy"
        case banDropIndex = "ban-drop-index"
        case banDropDatabase = "ban-drop-database"
        case banTruncateCascade = "ban-truncate-cascade"
        case renamingColumn = "renaming-column"
        case renamingTable = "renaming-table"
        case renamingObject = "renaming-object"
        case banSetSchema = "ban-set-schema"
        case banAlterIdentity = "ban-alter-identity"
        case banCreateDomainWithConstraint = "ban-create-domain-with-constraint"
        case requireEnumValueOrdering = "require-enum-value-ordering"
        case banSetDefault = "ban-set-default"
        case banDisableTrigger = "ban-disable-trigger"
        case banReplicaIdentity = "ban-replica-identity"
        case banAlterRowLevelSecurity = "ban-alter-row-level-security"
        case banNewWriteRestriction = "ban-new-write-restriction"
        case banAddColumn = "ban-add-column"
        case banAddEnumValue = "ban-add-enum-value"
        case banAddCompositeAttribute = "ban-add-composite-attribute"
        case banDetachInheritance = "ban-detach-inheritance"
        case banAlterSequenceValues = "ban-alter-sequence-values"
        case banReplaceViewFunction = "ban-replace-view-function"
        case banAlterExtension = "ban-alter-extension"
        case banRevoke = "ban-revoke"
        case banCreatePolicy = "ban-create-policy"
        case banAlterPolicyCondition = "ban-alter-policy-condition"
        case banAlterPolicyRoles = "ban-alter-policy-roles"
        case banAlterFunctionOptions = "ban-alter-function-options"
        case banAlterViewOptions = "ban-alter-view-options"
        case banAlterRoleOptions = "ban-alter-role-options"
        case banAlterDatabaseOptions = "ban-alter-database-options"
        case banAlterSystemOptions = "ban-alter-system-options"
        case banAlterGeneratedExpression = "ban-alter-generated-expression"
        case banDuplicateColumnAssignments = "ban-duplicate-column-assignments"
        case identifierTooLong = "identifier-too-long"
        case preferBigintOverInt = "prefer-bigint-over-int"
        case preferBigintOverSmallint = "prefer-bigint-over-smallint"
        case preferIdentity = "prefer-identity"
        case preferTextField = "prefer-text-field"
        case preferTimestampTz = "prefer-timestamp-tz"
        case banCharField = "ban-char-field"
        case requireTableSchema = "require-table-schema"
        case foreignKeyOrphans = "foreign-key-orphans"
        case dynamicSQL = "dynamic-sql"
        case foreignDDL = "foreign-ddl"
        case breaksOtherApp = "breaks-other-app"

        public var description: String { rawValue }
    }

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

    public var name: Name
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
    public static func named(_ name: LintRule.Name) -> LintRule? { byName[name] }

    /// The rule a name given by a user (`--include`, `--exclude`) stands for, or nil.
    public static func named(_ text: String) -> LintRule? { LintRule.Name(rawValue: text).flatMap { named($0) } }

    /// `names` with squawk's older `require-timeout-settings` replaced by the two rules it stands for
    /// (`require-lock-timeout`, `require-statement-timeout`), for `--include`/`--exclude` and `tally:ignore`.
    public static func expandingAliases(_ names: Set<LintRule.Name>) -> Set<LintRule.Name> {
        var names = names
        if names.remove(.requireTimeoutSettings) != nil { names.formUnion([.requireLockTimeout, .requireStatementTimeout]) }
        return names
    }

    /// Rules `plan` runs unless told otherwise.
    public static var defaultSet: Set<LintRule.Name> { Set(all.filter { $0.applies && $0.onByDefault }.map(\.name)) }

    private static func rule(_ name: LintRule.Name, _ kind: LintRule.Kind, on: Bool = true, _ tally: String) -> LintRule {
        LintRule(name: name, kind: kind, onByDefault: on, applies: true, tally: tally)
    }

    private static func notApplicable(_ name: LintRule.Name, _ kind: LintRule.Kind, on: Bool = true, _ why: String) -> LintRule {
        LintRule(name: name, kind: kind, onByDefault: on, applies: false, tally: why)
    }

    private static let byName = Dictionary(all.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })

    public static let all: [LintRule] = [
        // Locks, scans, rewrites: quiet on a table created by the pending migrations or holding no rows.
        rule(.addingFieldWithDefault, .lock, "ADD COLUMN whose DEFAULT calls a function the live database marks volatile, or a STORED generated column: rewrites the table under ACCESS EXCLUSIVE"),
        rule(.addingForeignKeyConstraint, .lock, "FOREIGN KEY without NOT VALID on a filled table: scans it while writes to both tables wait (info when Tally adds it online)"),
        rule(.addingNotNullableField, .lock, "SET NOT NULL on a filled table: a scan under ACCESS EXCLUSIVE, unless the live table already has a validated CHECK (col IS NOT NULL)"),
        rule(.addingSerialPrimaryKeyField, .lock, "ADD PRIMARY KEY without USING INDEX on a filled table: builds the index under ACCESS EXCLUSIVE"),
        rule(.addingRequiredField, .correctness, "NOT NULL column without a DEFAULT added to a table that has rows: the statement fails (error)"),
        rule(.banAlterDomainWithAddConstraint, .lock, "ALTER DOMAIN … ADD CONSTRAINT: scans every filled table with a column of the domain (named, with rows)"),
        rule(.changingColumnType, .lock, "ALTER COLUMN … TYPE on a filled table: a rewrite under ACCESS EXCLUSIVE; info when the live column's type makes it a catalog-only change (varchar widened, or to text)"),
        rule(.constraintMissingNotValid, .lock, "CHECK or FOREIGN KEY without NOT VALID on a filled table, or VALIDATE in the transaction that added it NOT VALID"),
        rule(.disallowedUniqueConstraint, .lock, "ADD UNIQUE without USING INDEX on a filled table: builds the index under ACCESS EXCLUSIVE"),
        rule(.requireConcurrentIndexCreation, .lock, "CREATE INDEX without CONCURRENTLY on a filled table: writes wait while it builds"),
        rule(.requireConcurrentIndexDeletion, .lock, "DROP INDEX without CONCURRENTLY when the index's table (looked up live) has rows"),
        rule(.requireConcurrentPartitionDetach, .lock, "DETACH PARTITION without CONCURRENTLY on a filled partitioned table"),
        rule(.requireConcurrentReindex, .lock, "REINDEX without CONCURRENTLY on a filled table (or a whole schema or database)"),
        rule(.preferRepack, .lock, "VACUUM FULL or CLUSTER on a filled table: rewrites it under ACCESS EXCLUSIVE (squawk: from PostgreSQL 19, REPACK CONCURRENTLY; before it, pg_repack)"),
        // The migration's transaction and settings.
        rule(.banConcurrentIndexCreationInTransaction, .transaction, "CONCURRENTLY in a file with other statements: Tally runs such a file statement by statement (drizzle-kit's migrator, in one transaction, fails), so a later failure leaves the earlier statements applied"),
        rule(.transactionNesting, .transaction, "BEGIN, COMMIT or ROLLBACK in a migration Tally runs in its own transaction (error)"),
        rule(.banUncommittedTransaction, .transaction, "BEGIN with no COMMIT after it in the file (error)"),
        rule(.preferRobustStmts, .transaction, "in a migration run outside a transaction (CONCURRENTLY): CREATE INDEX without IF NOT EXISTS, DROP INDEX without IF EXISTS; a rerun after a failure stops on them. Transactional migrations roll back whole, so Tally stays quiet there"),
        rule(.requireLockTimeout, .transaction, "no SET lock_timeout in a file that locks a filled table (info: Tally sets --lock-timeout itself; a tool running the file as written waits in the lock queue, blocking everything behind it)"),
        rule(.requireStatementTimeout, .transaction, "no SET statement_timeout in a file that scans, rewrites or indexes a filled table (info: Tally runs it under --statement-timeout when given)"),
        notApplicable(.requireTimeoutSettings, .transaction, on: false, "squawk's older name for require-lock-timeout plus require-statement-timeout, which Tally reports; `-- tally:ignore require-timeout-settings` silences both"),
        // Compatibility: quiet on objects the pending migrations create (they do not exist in the live database).
        rule(.banDropColumn, .compatibility, "DROP COLUMN of a live table"),
        rule(.banDropTable, .compatibility, "DROP TABLE of a live table (with its row count)"),
        rule(.banDropNotNull, .compatibility, "DROP NOT NULL on a live table: readers that assume a value break"),
        rule(.banDropConstraint, .compatibility, "DROP CONSTRAINT on a live table"),
        rule(.banDropDefault, .compatibility, "DROP DEFAULT on a live table: inserts that left the column out now write NULL or fail"),
        rule(.banDropGeneratedExpression, .compatibility, "DROP EXPRESSION on a live table"),
        rule(.banDropView, .compatibility, "DROP VIEW of a live view"),
        rule(.banDropFunction, .compatibility, "DROP FUNCTION or PROCEDURE of a live one"),
        rule(.banDropType, .compatibility, "DROP TYPE of a live type"),
        rule(.banDropDomain, .compatibility, "DROP DOMAIN of a live domain"),
        rule(.banDropSchema, .compatibility, "DROP SCHEMA of a live schema"),
        rule(.banDropSequence, .compatibility, "DROP SEQUENCE of a live sequence"),
        rule(.banDropExtension, .compatibility, "DROP EXTENSION of an installed extension"),
        rule(.banDropTrigger, .compatibility, on: false, "DROP TRIGGER of a live trigger"),
        rule(.banDropPolicy, .compatibility, on: false, "DROP POLICY of a live policy"),
        rule(.banDropIndex, .compatibility, on: false, "DROP INDEX of a live index (queries that relied on it slow down)"),
        rule(.banDropDatabase, .correctness, "DROP DATABASE in a migration (error)"),
        rule(.banTruncateCascade, .compatibility, "TRUNCATE … CASCADE of a live table: empties every table that references it too"),
        rule(.renamingColumn, .compatibility, "RENAME COLUMN of a live table"),
        rule(.renamingTable, .compatibility, "RENAME of a live table"),
        rule(.renamingObject, .compatibility, "RENAME of any other live object (index, view, sequence, type, constraint, function, schema)"),
        rule(.banSetSchema, .compatibility, "SET SCHEMA of a live object"),
        rule(.banAlterIdentity, .compatibility, "ADD, SET or DROP IDENTITY on a live table"),
        rule(.banCreateDomainWithConstraint, .compatibility, "CREATE DOMAIN with a CHECK (info): adding or changing its constraints later scans every table that uses it"),
        rule(.requireEnumValueOrdering, .compatibility, "ADD VALUE without BEFORE or AFTER (info): the value sorts last, which ORDER BY on the enum then shows"),
        rule(.banSetDefault, .compatibility, on: false, "SET DEFAULT on a live table"),
        rule(.banDisableTrigger, .compatibility, on: false, "DISABLE TRIGGER on a live table"),
        rule(.banReplicaIdentity, .compatibility, on: false, "REPLICA IDENTITY on a live table (logical replication)"),
        rule(.banAlterRowLevelSecurity, .compatibility, on: false, "ENABLE, DISABLE or FORCE ROW LEVEL SECURITY on a live table"),
        rule(.banNewWriteRestriction, .compatibility, on: false, "a new NOT NULL, CHECK, UNIQUE or FOREIGN KEY on a live table: writes that passed now fail"),
        rule(.banAddColumn, .compatibility, on: false, "ADD COLUMN on a live table (for consumers that SELECT * into fixed shapes)"),
        rule(.banAddEnumValue, .compatibility, on: false, "ADD VALUE to a live enum (consumers with exhaustive matches)"),
        rule(.banAddCompositeAttribute, .compatibility, on: false, "ADD ATTRIBUTE to a live composite type"),
        rule(.banDetachInheritance, .compatibility, on: false, "NO INHERIT on a live table"),
        rule(.banAlterSequenceValues, .compatibility, on: false, "ALTER SEQUENCE (restart, increment, bounds) of a live sequence"),
        rule(.banReplaceViewFunction, .compatibility, on: false, "CREATE OR REPLACE of a live view or function"),
        rule(.banAlterExtension, .compatibility, on: false, "ALTER EXTENSION"),
        rule(.banRevoke, .compatibility, on: false, "REVOKE"),
        rule(.banCreatePolicy, .compatibility, on: false, "CREATE POLICY"),
        rule(.banAlterPolicyCondition, .compatibility, on: false, "ALTER POLICY … USING or WITH CHECK"),
        rule(.banAlterPolicyRoles, .compatibility, on: false, "ALTER POLICY … TO"),
        rule(.banAlterFunctionOptions, .compatibility, on: false, "ALTER FUNCTION options (SECURITY DEFINER, volatility, settings)"),
        rule(.banAlterViewOptions, .compatibility, on: false, "ALTER VIEW … SET or RESET options"),
        rule(.banAlterRoleOptions, .compatibility, on: false, "ALTER ROLE"),
        rule(.banAlterDatabaseOptions, .compatibility, on: false, "ALTER DATABASE"),
        rule(.banAlterSystemOptions, .compatibility, on: false, "ALTER SYSTEM"),
        notApplicable(.banAlterGeneratedExpression, .compatibility, on: false, "ALTER COLUMN … SET EXPRESSION is PostgreSQL 17 syntax; Tally parses as PostgreSQL 15, which refuses it at `validate` with the file and line"),
        // Correctness.
        rule(.banDuplicateColumnAssignments, .correctness, "UPDATE … SET a = …, a = …: PostgreSQL refuses it (error)"),
        rule(.identifierTooLong, .correctness, "a name over 63 bytes, which PostgreSQL silently truncates (error)"),
        // Style: the same on new and live tables, as info.
        rule(.preferBigintOverInt, .style, "integer and serial columns (info): a credits ledger outgrows 2^31"),
        rule(.preferBigintOverSmallint, .style, "smallint and smallserial columns (info)"),
        rule(.preferIdentity, .style, "serial columns (info): GENERATED … AS IDENTITY instead"),
        rule(.preferTextField, .style, "varchar(n) columns (info): text with a CHECK; shrinking a varchar later rewrites the table"),
        rule(.preferTimestampTz, .style, "timestamp without time zone columns (info)"),
        rule(.banCharField, .style, "char(n) columns (info)"),
        rule(.requireTableSchema, .style, on: false, "CREATE or ALTER TABLE and CREATE INDEX with an unqualified table name"),
        // Tally's own.
        LintRule(name: .foreignKeyOrphans, kind: .correctness, onByDefault: true, applies: true,
                 tally: "a foreign key the live table's rows violate: `up` would stop there (error, with the count and sample keys)", squawk: false),
        LintRule(name: .dynamicSQL, kind: .transaction, onByDefault: true, applies: true,
                 tally: "a DO block that runs EXECUTE of text built at run time, which no linter can see (info)", squawk: false),
        LintRule(name: .foreignDDL, kind: .compatibility, onByDefault: true, applies: true,
                 tally: "with an ownership manifest (`--ownership`): a change to a table another app owns (error; a warning under --allow-foreign-ddl, which `up` needs to run it)", squawk: false),
        LintRule(name: .breaksOtherApp, kind: .compatibility, onByDefault: true, applies: true,
                 tally: "with an ownership manifest: a change to the app's own table that breaks another app using it: the table or a column dropped, a column renamed, a NOT NULL column without a default added (warning)", squawk: false),
    ]
}
