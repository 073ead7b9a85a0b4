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
                INSERT INTO "child" ("parent_id") SELECT 1 + g % 1000 FROM generate_series(1, 20000) g;
                """),
            ("0001_key", #"ALTER TABLE "child" ADD CONSTRAINT "child_parent_id_parent_id_fk" FOREIGN KEY ("parent_id") REFERENCES "public"."parent"("id");"#),
        ])
        defer { folder.remove() }
        // Made certain, not timed: the migration's transaction is held just before it commits (a lock on a
        // failure row it deletes last); a second session queues for a table lock on the validation records
        // behind the migration's own. PostgreSQL grants a queued table lock as the holder commits, before the
        // client hears of the commit, so the validation's transaction runs VALIDATE and then waits to delete
        // its record; the kill lands there. (A queued row lock would not do: the waiter must run again to take
        // it, and on a busy machine the validation got there first.)
        try await interrupted(
            folder, at: "VALIDATE CONSTRAINT", orAt: "DELETE FROM tally_migrate.validations", terminateBackend: false,
            before: { holdCommit, _ in
                try await holdCommit.execute("INSERT INTO tally_migrate.failures (history_table, tag, hash, statement, error) VALUES ('drizzle.__drizzle_migrations', '0001_key', 'earlier', 1, 'an earlier failure')")
                try await holdCommit.execute("BEGIN")
                try await holdCommit.execute("SELECT 1 FROM tally_migrate.failures WHERE tag = '0001_key' FOR UPDATE")
            },
            block: { holdCommit, holdRecord, db in
                #expect(try await waitForLockWait(on: "DELETE FROM tally_migrate.failures", in: db), "the migration waits before its commit")
                try await holdRecord.execute("BEGIN")
                let queued = Task { try await holdRecord.execute("LOCK TABLE tally_migrate.validations IN SHARE ROW EXCLUSIVE MODE") }
                #expect(try await waitForLockWait(on: "LOCK TABLE tally_migrate.validations", in: db), "the table lock is queued")
                try await holdCommit.execute("ROLLBACK")
                try await queued.value
            }
        ) { db, before in
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
                INSERT INTO "big" ("v") SELECT g % 9973 FROM generate_series(1, 20000) g;
                """),
            ("0001_index", """
                -- Built without blocking writes.
                CREATE INDEX CONCURRENTLY IF NOT EXISTS "big_v_idx" ON "big" USING btree ("v");
                """),
        ])
        defer { folder.remove() }
        // A transaction holding an older snapshot makes the build wait before it marks the index valid, as
        // any long-running report would: the index exists INVALID while it waits.
        try await interrupted(
            folder, at: "CREATE INDEX CONCURRENTLY", terminateBackend: true,
            before: { blocker, _ in
                try await blocker.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
                try await blocker.execute("SELECT count(*) FROM big")
            },
            readyWhen: "SELECT c.relname::text FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid WHERE c.relname = 'big_v_idx' AND NOT i.indisvalid"
        ) { db, before in
            #expect(before.contains("INVALID index public.big_v_idx"), Comment(rawValue: before))
        } resumed: { output in
            #expect(output.contains("dropping it to build it again"), Comment(rawValue: output))
        }
    }

    /// Applies `folder` once uninterrupted (the reference) and once killed while a query containing `marker`
    /// runs, then again; compares schema and history.
    func interrupted(
        _ folder: Folder, at marker: String, orAt otherMarker: String? = nil, terminateBackend: Bool,
        before: (DatabaseConnection, DatabaseConnection) async throws -> Void = { _, _ in },
        block: (DatabaseConnection, DatabaseConnection, ConnectionSettings) async throws -> Void = { _, _, _ in },
        readyWhen: String? = nil,
        stopped: (ConnectionSettings, String) async throws -> Void, resumed: (String) -> Void
    ) async throws {
        try await TestDatabase.withFreshDatabase { reference in
            let whole = try await TallyProcess.run(["migrate", "up", "--dir", folder.path, "--no-backup", "--database-url", reference.url()])
            #expect(whole.status == 0, Comment(rawValue: whole.stderr))

            try await TestDatabase.withFreshDatabase { db in
                let first = try await TallyProcess.run(["migrate", "up", "--to", "0000_big", "--dir", folder.path, "--no-backup", "--database-url", db.url()])
                #expect(first.status == 0, Comment(rawValue: first.stderr))
                let killed = try await withSingleConnection(db) { first in
                    try await withSingleConnection(db) { second in
                        try await before(first, second)
                        let launched = try TallyProcess.launch(["migrate", "up", "--dir", folder.path, "--no-backup", "--database-url", db.url()])
                        try await block(first, second, db)
                        let backend = try await waitForQuery(containing: [marker] + (otherMarker.map { [$0] } ?? []), in: db)
                        #expect(backend != nil, "saw \(marker) running")
                        if let readyWhen {
                            #expect(try await poll(db, readyWhen, every: .milliseconds(5), times: 6000) { !$0.isEmpty } != nil, "\(readyWhen)")
                        }
                        kill(launched.pid, SIGKILL)
                        let killed = await TallyProcess.collect(launched)
                        if terminateBackend, let backend {
                            // The connection dies with the client, as when a deploy host goes away.
                            _ = try await rows(db, "SELECT pg_terminate_backend(\(backend))::text")
                        }
                        try await first.execute("ROLLBACK")
                        try await second.execute("ROLLBACK")
                        return killed
                    }
                }
                #expect(killed.status != 0, "killed before it finished")
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
    func waitForQuery(containing markers: [String], in db: ConnectionSettings) async throws -> Int? {
        let matches = markers.map { "query ILIKE '%\($0)%'" }.joined(separator: " OR ")
        let sql = "SELECT pid::text FROM pg_stat_activity WHERE datname = '\(db.database)' AND state = 'active' AND (\(matches)) AND pid <> pg_backend_pid()"
        return try await poll(db, sql, every: .milliseconds(20), times: 3000) { !$0.isEmpty }?.first.flatMap { Int($0) }
    }

    /// Waits until no other session works on `db` (a killed client's backend finishes its statement first).
    func waitUntilIdle(_ db: ConnectionSettings) async throws {
        let sql = "SELECT count(*)::text FROM pg_stat_activity WHERE datname = '\(db.database)' AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        _ = try await poll(db, sql, every: .milliseconds(100), times: 600) { $0 == ["0"] }
    }

    /// Runs `sql` on one connection until `done` holds for its rows (returned) or `times` tries pass (nil).
    func poll(_ db: ConnectionSettings, _ sql: String, every interval: Duration, times: Int, until done: ([String]) -> Bool) async throws -> [String]? {
        try await withSingleConnection(db) { connection in
            for _ in 0..<times {
                var out: [String] = []
                for try await value in try await connection.query(PostgresQuery(unsafeSQL: sql)).decode(String.self) {
                    out.append(value)
                }
                if done(out) { return out }
                try await Task.sleep(for: interval)
            }
            return nil
        }
    }

    /// Waits (up to a minute) until a session of `db` running a query that starts with `prefix` waits for a lock.
    func waitForLockWait(on prefix: String, in db: ConnectionSettings) async throws -> Bool {
        let sql = "SELECT pid::text FROM pg_stat_activity WHERE datname = '\(db.database)' AND wait_event_type = 'Lock' AND query LIKE '\(prefix)%'"
        return try await poll(db, sql, every: .milliseconds(10), times: 6000) { !$0.isEmpty } != nil
    }

    func rows(_ db: ConnectionSettings, _ sql: String) async throws -> [String] {
        try await poll(db, sql, every: .zero, times: 1) { _ in true } ?? []
    }
}
