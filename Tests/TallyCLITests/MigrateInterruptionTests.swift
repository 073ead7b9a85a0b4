import Foundation
import PostgresNIO
import TallyPostgres
import TallyTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `kill -9` of `tally migrate up` in the middle of its slow steps, then another `up`: the database ends with
/// the schema and history of a run nobody interrupted.
@Suite struct MigrateInterruptionTests {
    typealias Folder = MigrateFailureTests.Folder

    @Test func killedDuringValidateFinishesOnTheNextRun() async throws {
        let folder = try Folder([
            ("0000_big", """
                CREATE TABLE "parent" ("id" integer PRIMARY KEY NOT NULL);
                --> statement-breakpoint
                CREATE TABLE "child" ("id" bigserial PRIMARY KEY NOT NULL, "parent_id" integer NOT NULL);
                --> statement-breakpoint
                INSERT INTO "parent" SELECT g FROM generate_series(1, 1000) g;
                --> statement-breakpoint
                INSERT INTO "child" ("parent_id") SELECT 1 + g % 1000 FROM generate_series(1, 1500000) g;
                """),
            ("0001_key", #"ALTER TABLE "child" ADD CONSTRAINT "child_parent_id_parent_id_fk" FOREIGN KEY ("parent_id") REFERENCES "public"."parent"("id");"#),
        ])
        defer { folder.remove() }
        try await interrupted(folder, at: "VALIDATE CONSTRAINT", terminateBackend: false) { db, before in
            #expect(before.contains("Still to validate: child_parent_id_parent_id_fk"), Comment(rawValue: before))
        } resumed: { output in
            #expect(output.contains("Resuming: 0001_key is applied"), Comment(rawValue: output))
        }
    }

    @Test func killedDuringCreateIndexConcurrentlyRebuildsTheInvalidIndex() async throws {
        let folder = try Folder([
            ("0000_big", """
                CREATE TABLE "big" ("id" bigserial PRIMARY KEY NOT NULL, "v" integer NOT NULL);
                --> statement-breakpoint
                INSERT INTO "big" ("v") SELECT g % 9973 FROM generate_series(1, 1500000) g;
                """),
            ("0001_index", """
                -- Built without blocking writes.
                CREATE INDEX CONCURRENTLY IF NOT EXISTS "big_v_idx" ON "big" USING btree ("v");
                """),
        ])
        defer { folder.remove() }
        try await interrupted(
            folder, at: "CREATE INDEX CONCURRENTLY", terminateBackend: true,
            readyWhen: "SELECT relname::text FROM pg_class WHERE relname = 'big_v_idx'"
        ) { db, before in
            #expect(before.contains("INVALID index public.big_v_idx"), Comment(rawValue: before))
        } resumed: { output in
            #expect(output.contains("dropping it to build it again"), Comment(rawValue: output))
        }
    }

    /// Applies `folder` once uninterrupted (the reference) and once killed while a query containing `marker`
    /// runs, then again; compares schema and history.
    func interrupted(
        _ folder: Folder, at marker: String, terminateBackend: Bool, readyWhen: String? = nil,
        stopped: (ConnectionSettings, String) async throws -> Void, resumed: (String) -> Void
    ) async throws {
        try await TestDatabase.withFreshDatabase { reference in
            let whole = try await TallyProcess.run(["migrate", "up", "--dir", folder.path, "--no-backup", "--database-url", reference.url()])
            #expect(whole.status == 0, Comment(rawValue: whole.stderr))

            try await TestDatabase.withFreshDatabase { db in
                let first = try await TallyProcess.run(["migrate", "up", "--to", "0000_big", "--dir", folder.path, "--no-backup", "--database-url", db.url()])
                #expect(first.status == 0, Comment(rawValue: first.stderr))
                let launched = try TallyProcess.launch(["migrate", "up", "--dir", folder.path, "--no-backup", "--database-url", db.url()])
                let backend = try await waitForQuery(containing: marker, in: db)
                #expect(backend != nil, "saw \(marker) running")
                if let readyWhen {
                    var tries = 0
                    while try await rows(db, readyWhen).isEmpty, tries < 1000 {
                        tries += 1
                        try await Task.sleep(for: .milliseconds(5))
                    }
                }
                kill(launched.pid, SIGKILL)
                let killed = await TallyProcess.collect(launched)
                #expect(killed.status != 0)
                if terminateBackend, let backend {
                    // The connection dies with the client, as when a deploy host goes away.
                    _ = try await rows(db, "SELECT pg_terminate_backend(\(backend))::text")
                }
                try await waitUntilIdle(db)

                let validate = try await TallyProcess.run(["migrate", "validate", "--dir", folder.path, "--database-url", db.url()])
                #expect(validate.status == 1, "validate fails while the work is unfinished")
                try await stopped(db, validate.stdout)

                let again = try await TallyProcess.run(["migrate", "up", "--dir", folder.path, "--no-backup", "--database-url", db.url()])
                #expect(again.status == 0, Comment(rawValue: again.stderr))
                resumed(again.stderr)
                #expect(try await TallyProcess.run(["migrate", "validate", "--dir", folder.path, "--database-url", db.url()]).status == 0)

                let history = "SELECT hash || ' ' || created_at FROM drizzle.__drizzle_migrations ORDER BY id"
                #expect(try await rows(db, history) == rows(reference, history))
                let catalog = """
                    SELECT c.relname || ' ' || coalesce(pg_get_indexdef(i.indexrelid), '') || ' ' || coalesce(i.indisvalid::text, '')
                    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_index i ON i.indexrelid = c.oid
                    WHERE n.nspname = 'public' ORDER BY 1
                    """
                #expect(try await rows(db, catalog) == rows(reference, catalog))
                let constraints = "SELECT conname || ' ' || pg_get_constraintdef(oid) || ' ' || convalidated::text FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1"
                #expect(try await rows(db, constraints) == rows(reference, constraints))
            }
        }
    }

    /// The backend pid running a query that contains `marker` on `db`, once one is seen (within a minute).
    func waitForQuery(containing marker: String, in db: ConnectionSettings) async throws -> Int? {
        let sql = "SELECT pid::text FROM pg_stat_activity WHERE datname = '\(db.database)' AND state = 'active' AND query ILIKE '%\(marker)%' AND pid <> pg_backend_pid()"
        for _ in 0..<3000 {
            if let pid = try await rows(db, sql).first { return Int(pid) }
            try await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }

    /// Waits until no other session works on `db` (a killed client's backend finishes its statement first).
    func waitUntilIdle(_ db: ConnectionSettings) async throws {
        let sql = "SELECT count(*)::text FROM pg_stat_activity WHERE datname = '\(db.database)' AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        for _ in 0..<600 {
            if try await rows(db, sql) == ["0"] { return }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    func rows(_ db: ConnectionSettings, _ sql: String) async throws -> [String] {
        try await withSingleConnection(db) { connection in
            var out: [String] = []
            for try await value in try await connection.query(PostgresQuery(unsafeSQL: sql), logger: LocalCluster.quietLogger).decode(String.self) {
                out.append(value)
            }
            return out
        }
    }
}
