import Foundation
import PostgresNIO
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyMigrate

/// `tally db drift` against Drizzle snapshots of every shape (Tests/DriftCorpus, written by its make.py): a
/// database migrated by the folder has no drift, and each kind of drift made by hand is found, with the fix.
@Suite struct DriftTests {
    static func folder(_ name: String) -> String {
        TestDatabase.packageRoot.appendingPathComponent("Tests/DriftCorpus/\(name)").path
    }

    static func execute(_ db: ConnectionSettings, _ statements: [String]) async throws {
        try await withSingleConnection(db) { connection in
            for statement in statements { try await connection.run(statement) }
        }
    }

    /// False drift would get the check switched off: every shape, applied by its own SQL, compares clean.
    @Test(.freshDatabase, arguments: ["v5-shop", "v6-shop", "v7-shop", "v8-shop"])
    func aFolderAppliedByItsOwnSQLHasNoDrift(_ name: String) async throws {
        let db = try TestDatabase.current
        _ = try await Migrator(folder: try MigrationFolder(path: Self.folder(name)), database: db).up()
        let declaration = try DrizzleSnapshot.newest(in: Self.folder(name))
        #expect(declaration.tables.sorted() == ["billing.invoices", "public.order_items", "public.orders", "public.users"])
        let report = try await Drift.check(declaration, against: db)
        #expect(report.findings.isEmpty, "\(report.findings.map(\.message))")
        #expect(!report.hasDrift)
    }

    @Test(.freshDatabase) func eachKindOfDriftMadeByHandIsFoundWithItsFix() async throws {
        let db = try TestDatabase.current
        _ = try await Migrator(folder: try MigrationFolder(path: Self.folder("v7-shop")), database: db).up()
        try await Self.execute(db, [
            "ALTER TABLE orders DROP CONSTRAINT orders_user_id_users_id_fk",
            "ALTER TABLE order_items DROP CONSTRAINT order_items_order_id_orders_id_fk",
            "ALTER TABLE order_items ADD CONSTRAINT order_items_order_id_orders_id_fk FOREIGN KEY (order_id) REFERENCES orders(id) ON DELETE RESTRICT ON UPDATE CASCADE",
            "ALTER TABLE users ALTER COLUMN email TYPE varchar(320)",
            "ALTER TABLE users DROP COLUMN name",
            "ALTER TABLE users ALTER COLUMN created_at DROP NOT NULL",
            "ALTER TABLE order_items ALTER COLUMN quantity SET DEFAULT 2",
            "DROP INDEX orders_user_idx",
            "CREATE INDEX orders_tags_idx ON orders USING gin (tags)",
            "ALTER TABLE users ADD COLUMN manager_id uuid REFERENCES users(id)",
            "ALTER TYPE order_status ADD VALUE 'refunded'",
            "ALTER TABLE orders DROP CONSTRAINT orders_total_nonnegative",
            "ALTER INDEX orders_note_lower_idx RENAME TO orders_note_idx",
            "CREATE TABLE audit_log (id integer)",
            "ALTER TABLE users DROP CONSTRAINT users_email_unique",
            "ALTER TABLE order_items DROP CONSTRAINT order_items_order_id_sku_pk",
            "ALTER TABLE order_items ADD PRIMARY KEY (order_id, sku, quantity)",
            "DROP TABLE billing.invoices",
        ])
        let report = try await Drift.check(try DrizzleSnapshot.newest(in: Self.folder("v7-shop")), against: db)
        let found = Set(report.findings.map { "\($0.kind.rawValue) \($0.object)" })
        let expected: Set<String> = [
            "missing-foreign-key orders.user_id", "foreign-key-action-mismatch order_items.order_id", "type-mismatch users.email",
            "missing-column users.name", "nullability-mismatch users.created_at", "default-mismatch order_items.quantity",
            "missing-index orders index orders_user_idx", "extra-index orders index orders_tags_idx", "extra-column users.manager_id",
            "extra-foreign-key users.manager_id", "enum-mismatch order_status", "missing-check orders orders_total_nonnegative",
            "name-mismatch orders index orders_note_lower_idx", "extra-table audit_log", "missing-unique users users_email_unique",
            "primary-key-mismatch order_items", "missing-table billing.invoices",
        ]
        #expect(found == expected, "missed: \(expected.subtracting(found).sorted()); not expected: \(found.subtracting(expected).sorted())")
        #expect(report.hasDrift)
        #expect(report.findings.filter(\.notice).map(\.kind) == [.nameMismatch], "a name alone is a notice")
        let key = try #require(report.findings.first { $0.kind == .missingForeignKey })
        #expect(key.message.contains("orders_user_id_users_id_fk → users(id) ON DELETE CASCADE ON UPDATE NO ACTION"), "\(key.message)")
        #expect(key.fix.contains("NOT VALID, then VALIDATE CONSTRAINT"))
        let type = try #require(report.findings.first { $0.kind == .typeMismatch })
        #expect(type.declared == "character varying(255)" && type.live == "character varying(320)")
        let action = try #require(report.findings.first { $0.kind == .foreignKeyActionMismatch })
        #expect(action.declared?.contains("ON DELETE CASCADE ON UPDATE CASCADE") == true && action.live?.contains("ON DELETE RESTRICT") == true)
        #expect(report.githubAnnotations.count == report.findings.count)
        #expect(report.githubAnnotations.first { $0.hasPrefix("::notice ") } != nil && report.githubAnnotations.allSatisfy { $0.hasPrefix("::error ") || $0.hasPrefix("::notice ") })
    }

    /// The kinds the first test leaves out: identity, generated, extra unique and check, changed check and index,
    /// a missing enum.
    @Test(.freshDatabase) func theOtherKindsOfDriftAreFoundToo() async throws {
        let db = try TestDatabase.current
        _ = try await Migrator(folder: try MigrationFolder(path: Self.folder("v7-shop")), database: db).up()
        try await Self.execute(db, [
            "ALTER TABLE order_items ALTER COLUMN quantity DROP DEFAULT",
            "ALTER TABLE order_items ALTER COLUMN quantity ADD GENERATED BY DEFAULT AS IDENTITY",
            "ALTER TABLE users DROP COLUMN name",
            "ALTER TABLE users ADD COLUMN name text GENERATED ALWAYS AS (lower(email)) STORED",
            "ALTER TABLE billing.invoices ADD CONSTRAINT invoices_amount_unique UNIQUE (amount)",
            "ALTER TABLE users ADD CONSTRAINT users_email_not_blank CHECK (email <> '')",
            "ALTER TABLE orders DROP CONSTRAINT orders_total_nonnegative",
            "ALTER TABLE orders ADD CONSTRAINT orders_total_nonnegative CHECK (total > 0)",
            "DROP INDEX orders_user_idx",
            "CREATE INDEX orders_user_idx ON orders (user_id, id)",
            "DROP INDEX orders_note_lower_idx",
            "ALTER TABLE orders ALTER COLUMN status DROP DEFAULT",
            "ALTER TABLE orders ALTER COLUMN status TYPE text",
            "DROP TYPE order_status",
        ])
        let report = try await Drift.check(try DrizzleSnapshot.newest(in: Self.folder("v7-shop")), against: db)
        let found = Set(report.findings.map { "\($0.kind.rawValue) \($0.object)" })
        let expected: Set<String> = [
            "identity-mismatch order_items.quantity", "generated-mismatch users.name", "extra-unique billing.invoices invoices_amount_unique",
            "extra-check users users_email_not_blank", "check-mismatch orders orders_total_nonnegative", "index-mismatch orders index orders_user_idx",
            "missing-index orders index orders_note_lower_idx", "missing-enum order_status", "type-mismatch orders.status", "default-mismatch orders.status",
        ]
        #expect(found == expected, "missed: \(expected.subtracting(found).sorted()); not expected: \(found.subtracting(expected).sorted())")
        let check = try #require(report.findings.first { $0.kind == .checkMismatch })
        #expect(check.declared == "CHECK ((total >= (0)::numeric))" && check.live == "CHECK ((total > (0)::numeric))")
    }

    @Test func aSnapshotThatCannotBeReadIsAClearErrorNamingItsFile() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("tally-drift-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: base) }
        try FileManager.default.createDirectory(atPath: base + "/meta", withIntermediateDirectories: true)
        #expect { try DrizzleSnapshot.newest(in: base) } throws: { "\($0)".contains("has no Drizzle snapshot") }
        let file = base + "/meta/0003_snapshot.json"
        for (text, says) in [
            ("{\"version\": \"7\", \"dialect\": \"postgresql\", \"tables\": {", "is not valid JSON"),
            ("[1, 2]", "is not a Drizzle snapshot"),
            ("{\"version\": \"4\", \"dialect\": \"pg\", \"tables\": {}}", "version 4 snapshot; Tally reads versions 5 to 8"),
            ("{\"version\": \"7\", \"dialect\": \"mysql\", \"tables\": {}}", "is a mysql snapshot"),
            ("{\"version\": \"7\", \"dialect\": \"postgresql\", \"tables\": {\"public.t\": {\"name\": \"t\", \"columns\": {\"c\": {\"name\": \"c\"}}}}}", "column t.c has no type"),
        ] {
            try text.write(toFile: file, atomically: true, encoding: .utf8)
            #expect { try DrizzleSnapshot.newest(in: base) } throws: { "\($0)".contains(file) && "\($0)".contains(says) }
        }
    }

    /// A declaration PostgreSQL refuses is an error with the statement, not drift.
    @Test(.freshDatabase) func aDeclarationPostgreSQLRefusesIsAnErrorWithTheStatement() async throws {
        let db = try TestDatabase.current
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("tally-drift-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: base) }
        try FileManager.default.createDirectory(atPath: base + "/meta", withIntermediateDirectories: true)
        try """
            {"version": "7", "dialect": "postgresql", "tables": {"public.t": {"name": "t", "schema": "", "columns": {"c": {"name": "c", "type": "no_such_type", "primaryKey": false, "notNull": false}}}}}
            """.write(toFile: base + "/meta/0000_snapshot.json", atomically: true, encoding: .utf8)
        await #expect { try await Drift.check(try DrizzleSnapshot.newest(in: base), against: db) } throws: {
            "\($0)".contains("PostgreSQL refuses what it declares") && "\($0)".contains("no_such_type") && "\($0)".contains("CREATE TABLE \"public\".\"t\"")
        }
    }
}

/// Drift against SQLAlchemy models, imported by the script Tally ships in the venv's real SQLAlchemy.
@Suite struct SQLAlchemyDriftTests {
    static var python: String { TestDatabase.packageRoot.appendingPathComponent(".build/fuzz-venv/bin/python").path }

    static let models = """
        import enum
        from sqlalchemy import Column, Enum, ForeignKey, Integer, String, MetaData
        from sqlalchemy.orm import declarative_base, relationship

        Base = declarative_base()

        class Owner(Base):
            __tablename__ = "owners"
            id = Column(String, primary_key=True)
            email = Column(String, nullable=False)

        class Account(Base):
            __tablename__ = "accounts"
            id = Column(Integer, primary_key=True)
            owner_id = Column(String, nullable=False)
            status = Column(Enum("open", "closed", name="account_status"), nullable=False)
            note = Column(String)
            owner = relationship(Owner, primaryjoin="Account.owner_id == Owner.id", foreign_keys=[owner_id])
        """

    @Test(.freshDatabase) func aModelCoversOnlyWhatItMapsAndARelationWithoutAKeyIsFound() async throws {
        let db = try TestDatabase.current
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tally-models-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory + "/shop", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "".write(toFile: directory + "/shop/__init__.py", atomically: true, encoding: .utf8)
        try Self.models.write(toFile: directory + "/shop/models.py", atomically: true, encoding: .utf8)
        try await DriftTests.execute(db, [
            "CREATE TYPE account_status AS ENUM ('open', 'closed', 'frozen')",
            "CREATE TABLE owners (id text PRIMARY KEY, email text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
            "CREATE TABLE accounts (id serial PRIMARY KEY, owner_id text NOT NULL, status account_status NOT NULL, note text, region text NOT NULL, legacy text)",
        ])
        let declaration = try await SQLAlchemyMetadata.read(spec: "shop.models:Base.metadata", python: Self.python, directory: directory)
        #expect(declaration.label == "sqlalchemy" && !declaration.coversWholeTables)
        let report = try await Drift.check(declaration, against: db)
        // String on a text column, columns the model leaves out that have a default or allow NULL: no finding.
        #expect(Set(report.findings.map { "\($0.kind.rawValue) \($0.object)" }) == [
            "unmapped-required-column accounts.region", "unenforced-relation accounts.owner_id", "enum-mismatch account_status",
        ], "\(report.findings.map(\.message))")
        let relation = try #require(report.findings.first { $0.kind == .unenforcedRelation })
        #expect(relation.message.contains("relationship Account.owner → owners(id)") && relation.fix.contains("foreign_key=\"owners.id\""))

        // With the key in the database, the model's missing ForeignKey is the finding instead.
        try await DriftTests.execute(db, ["ALTER TABLE accounts ADD CONSTRAINT accounts_owner_fk FOREIGN KEY (owner_id) REFERENCES owners(id) ON DELETE CASCADE"])
        let after = try await Drift.check(declaration, against: db)
        let key = try #require(after.findings.first { $0.kind == .extraForeignKey })
        #expect(key.message == "sqlalchemy: extra-foreign-key accounts.owner_id: declared no ForeignKey; the database has accounts_owner_fk → owners(id) ON DELETE CASCADE ON UPDATE NO ACTION: add foreign_key=\"owners.id\" (ondelete=\"CASCADE\") to the model's owner_id")
        #expect(!after.findings.contains { $0.kind == .unenforcedRelation })
    }

    @Test func aModelThatCannotBeImportedSaysWhy() async throws {
        await #expect { try await SQLAlchemyMetadata.read(spec: "no_such_module:metadata", python: Self.python) } throws: {
            "\($0)".contains("could not read no_such_module:metadata") && "\($0)".contains("ModuleNotFoundError")
        }
        await #expect { try await SQLAlchemyMetadata.read(spec: "models", python: Self.python) } throws: { "\($0)".contains("module:attribute") }
        await #expect { try await SQLAlchemyMetadata.read(spec: "a:b", python: "/no/such/python") } throws: { "\($0)".contains("/no/such/python") }
    }
}
