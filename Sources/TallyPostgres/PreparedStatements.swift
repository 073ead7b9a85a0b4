import Foundation
import Logging
import PostgresNIO
import Synchronization

/// A statement on a hot path, run as a named prepared statement: parsed and planned once per connection, then
/// only bound and executed. (Planning the balance read costs PostgreSQL about four times what running it
/// does.) Its name is derived from its SQL, so two versions of Tally never share a name for different SQL.
public protocol HotStatement: PostgresPreparedStatement {
    /// What runs when statements are not prepared (a transaction-mode pooler): `sql` unless the statement
    /// has a cheaper form to plan every time, such as a call of a PL/pgSQL function that keeps `sql`'s plan
    /// in the server's session.
    static var unpreparedSQL: String { get }
}

extension HotStatement {
    public static var name: String { PreparedStatements.name(of: Self.self, sql: sql) }
    public static var unpreparedSQL: String { sql }
}

/// Whether a database's hot statements are prepared: on unless the connection URL says
/// `?prepared_statements=off`, and turned off for good when the server answers that a statement prepared on
/// the connection does not exist there (or already exists): the sign of a transaction-mode pooler that does
/// not keep named prepared statements (PgBouncer before 1.21, or later ones without
/// `max_prepared_statements`), which hands each transaction to any server connection.
public final class PreparedStatements: Sendable {
    private let enabled: Atomic<Bool>

    public init(enabled: Bool) {
        self.enabled = Atomic(enabled)
    }

    public var isEnabled: Bool { enabled.load(ordering: .relaxed) }

    /// Turns them off; true when they were on.
    func turnOff() -> Bool {
        enabled.exchange(false, ordering: .relaxed)
    }

    private static let names = Mutex<[ObjectIdentifier: String]>([:])

    static func name(of type: Any.Type, sql: String) -> String {
        let key = ObjectIdentifier(type)
        if let known = names.withLock({ $0[key] }) { return known }
        let name = "tally_" + sha256Hex(Data(sql.utf8)).prefix(24)
        names.withLock { $0[key] = name }
        return name
    }

    /// SQLSTATEs that say a named statement is not where the connection left it: 26000
    /// (invalid_sql_statement_name: "prepared statement … does not exist") and 42P05
    /// (duplicate_prepared_statement).
    static func isLostStatement(_ error: any Error) -> Bool {
        guard let error = error as? PSQLError, let state = error.serverInfo?[.sqlState] else { return false }
        return state == "26000" || state == "42P05"
    }
}

/// Inside a transaction, a prepared statement the server no longer had: the statement failed, so the
/// transaction is rolled back and did nothing; prepared statements are now off, and a retry runs unprepared.
public struct PreparedStatementLost: Error, CustomStringConvertible {
    public var statement: String
    public var description: String {
        "the database (or a pooler in front of it) lost the prepared statement \(statement); nothing was done and prepared statements are now off, so retry"
    }
}

extension DatabaseConnection {
    /// Runs `statement`: prepared on this connection the first time and reused after, when prepared statements
    /// are on; else as an ordinary statement (its `unpreparedSQL`) with the same values. When the server has lost the
    /// prepared statement (a pooler in between), prepared statements are turned off for the database and,
    /// outside a transaction (where the failed statement did nothing and aborted nothing), it runs again
    /// unprepared; inside one `PreparedStatementLost` is thrown, so that the transaction is retried.
    public func run<Statement: HotStatement>(_ statement: Statement) async throws -> [Statement.Row] {
        guard let prepared, prepared.isEnabled else { return try await runUnprepared(statement) }
        guard !underlying.isClosed else { throw ConnectionClosed() }
        do {
            var rows: [Statement.Row] = []
            for try await row in try await underlying.execute(statement, logger: logger) { rows.append(row) }
            return rows
        } catch where PreparedStatements.isLostStatement(error) {
            if prepared.turnOff() {
                logger.warning(
                    "the database (or a pooler in front of it) lost a prepared statement: Tally stops preparing statements; add ?prepared_statements=off to the database URL to start that way",
                    metadata: ["statement": "\(Statement.name)"])
            }
            if inTransaction { throw PreparedStatementLost(statement: Statement.name) }
            return try await runUnprepared(statement)
        }
    }

    private func runUnprepared<Statement: HotStatement>(_ statement: Statement) async throws -> [Statement.Row] {
        var rows: [Statement.Row] = []
        for try await row in try await query(PostgresQuery(unsafeSQL: Statement.unpreparedSQL, binds: try statement.makeBindings())) {
            rows.append(try statement.decodeRow(row))
        }
        return rows
    }
}
