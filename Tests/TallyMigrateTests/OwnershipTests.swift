import Foundation
import PostgresNIO
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyMigrate

/// The ownership manifest: read with its errors located, and applied to an app's migrations.
@Suite struct OwnershipTests {
    static let manifest = """
        # fltr_auth: who owns which tables
        [apps.nextjs]
        drizzle = "nextjs/migrations"
        owns = ["public.users", "teams", "public.user_credits"]

        [apps.fastapi]
        sqlalchemy = "models.credits:SQLModel.metadata"
        app_dir = "fastapi"
        owns = ["jobs.*"]
        reads = ["public.users"]
        writes = ["public.user_credits"]
        """

    static func write(_ text: String) throws -> String {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tally-owners-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try text.write(toFile: folder + "/tally.toml", atomically: true, encoding: .utf8)
        return folder + "/tally.toml"
    }

    @Test func theManifestSaysWhoOwnsWhatAndItsMistakesAreLocated() throws {
        let path = try Self.write(Self.manifest)
        let manifest = try OwnershipManifest.load(path: path)
        #expect(manifest.apps.map(\.name) == ["fastapi", "nextjs"])
        #expect(manifest.owner(of: QualifiedName(name: "teams"))?.name == "nextjs")
        #expect(manifest.owner(of: QualifiedName(schema: "jobs", name: "queue"))?.name == "fastapi")
        #expect(manifest.owner(of: QualifiedName(name: "audit")) == nil)
        #expect(manifest.users(of: QualifiedName(name: "user_credits")).map { "\($0.app.name) \($0.writes)" } == ["fastapi true"])
        let fastapi = try manifest.app("fastapi")
        #expect(fastapi.appDirectory == URL(fileURLWithPath: path).deletingLastPathComponent().path + "/fastapi" && fastapi.role == "fastapi_app")
        #expect(throws: MigrateError.self) { try manifest.app("django") }

        for (text, says) in [
            ("[apps.nextjs]\nowns = [\"users\"\n", "tally.toml:2:"),
            ("[apps.nextjs]\nown = [\"users\"]\n", "apps.nextjs has an unknown key own"),
            ("[apps.nextjs]\nowns = [\"a.b.c\"]\n", "a.b.c\", which is not schema.table"),
            ("[apps.nextjs]\nowns = \"users\"\n", "apps.nextjs.owns must be a list"),
            ("[apps.a]\nowns = [\"users\"]\n[apps.b]\nowns = [\"public.users\"]\n", "public.users is owned by both a and b"),
            ("title = \"x\"\n", "unknown top-level key title"),
            ("", "names no app"),
        ] {
            let bad = try Self.write(text)
            #expect { try OwnershipManifest.load(path: bad) } throws: { "\($0)".contains(bad) && "\($0)".contains(says) }
        }
    }

    @Test(.freshDatabase) func anAppsMigrationMayNotChangeAnotherAppsTable() async throws {
        let db = try TestDatabase.current
        let manifest = try OwnershipManifest.load(path: try Self.write(Self.manifest))
        try await withSingleConnection(db) { connection in
            try await connection.run("CREATE TABLE users (id text PRIMARY KEY, name text); CREATE TABLE user_credits (id serial PRIMARY KEY, user_id text NOT NULL)")
        }
        // FastAPI's migration reaches into the Next.js app's users table.
        let fastapi = try DrizzleFolder([(tag: "0000_fastapi", when: 1, sql: "CREATE SCHEMA jobs;\n--> statement-breakpoint\nCREATE TABLE jobs.queue (id int);\n--> statement-breakpoint\nALTER TABLE users ADD COLUMN nickname text;")])
        defer { fastapi.remove() }
        var options = Migrator.Options()
        options.ownership = try OwnershipCheck(manifest: manifest, app: "fastapi")
        let migrator = Migrator(folder: try MigrationFolder(path: fastapi.path), database: db, options: options)
        let plan = try await migrator.plan()
        let foreign = plan.migrations.flatMap(\.statements).flatMap(\.findings).filter { $0.rule == .foreignDDL }
        #expect(foreign.count == 1 && foreign.first?.severity == .error && foreign.first?.table == "public.users", "\(foreign)")
        #expect(foreign.first?.message.contains("changes public.users, which nextjs owns") == true && foreign.first?.message.contains("fastapi may only read it") == true)
        // `plan --exclude foreign-ddl` silences it like any rule; `up` still refuses (its check is its own).
        var excluding = options
        excluding.lintRules.remove(.foreignDDL)
        let quiet = try await Migrator(folder: try MigrationFolder(path: fastapi.path), database: db, options: excluding).plan()
        #expect(!quiet.migrations.flatMap(\.statements).flatMap(\.findings).contains { $0.rule == .foreignDDL })
        await #expect { try await migrator.up() } throws: { "\($0)".contains("nothing applied") && "\($0)".contains("0000_fastapi") }
        #expect(try await query(db, "SELECT count(*)::int FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'nickname'", as: Int.self) == [0])
        #expect(try await query(db, "SELECT count(*)::int FROM pg_namespace WHERE nspname = 'jobs'", as: Int.self) == [0], "nothing of the migration ran")

        // Overridden: it runs, and the override is recorded.
        options.ownership = try OwnershipCheck(manifest: manifest, app: "fastapi", allowForeignDDL: true)
        _ = try await Migrator(folder: try MigrationFolder(path: fastapi.path), database: db, options: options).up()
        #expect(try await query(db, "SELECT app || ' ' || tag || ' ' || array_to_string(tables, ',') FROM tally_migrate.overrides", as: String.self)
                == ["fastapi 0000_fastapi public.users"])

        // The owner's own change is allowed, with a warning for each app it would break.
        let nextjs = try DrizzleFolder([(tag: "0000_nextjs", when: 1, sql: "ALTER TABLE user_credits ADD COLUMN region text NOT NULL;\n--> statement-breakpoint\nALTER TABLE users DROP COLUMN name;\n--> statement-breakpoint\nALTER TABLE user_credits ADD COLUMN note text NOT NULL DEFAULT '';\n--> statement-breakpoint\nALTER TABLE user_credits RENAME COLUMN user_id TO owner_id;")])
        defer { nextjs.remove() }
        options.ownership = try OwnershipCheck(manifest: manifest, app: "nextjs")
        let owned = try await Migrator(folder: try MigrationFolder(path: nextjs.path), database: db, historyTable: HistoryTable(schema: "drizzle", table: "nextjs_migrations"), options: options).plan()
        let findings = owned.migrations.flatMap(\.statements).flatMap(\.findings)
        #expect(!findings.contains { $0.rule == .foreignDDL })
        let breaks = findings.filter { $0.rule == .breaksOtherApp }.map(\.message)
        #expect(breaks.count == 3, "\(breaks)")
        #expect(breaks.contains { $0.contains("renames public.user_credits.user_id, and fastapi writes public.user_credits") })
        #expect(breaks.contains { $0.contains("adds public.user_credits.region NOT NULL without a default, and fastapi writes public.user_credits") })
        #expect(breaks.contains { $0.contains("drops public.users.name, and fastapi reads public.users") })
    }
}
