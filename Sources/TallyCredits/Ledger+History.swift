import Foundation
import PostgresNIO
import TallyPostgres

/// One ledger entry as `GET /v1/credits/transactions` lists it.
public struct LedgerEntry: Sendable, Codable, Equatable {
    public var id: Int64
    public var kind: String
    public var amount: Int64
    public var balanceAfter: Int64
    public var description: String?
    public var metadata: JSONValue?
    public var apiKeyID: UUID?
    public var grantID: UUID?
    public var holdID: UUID?
    public var createdAt: Date

    enum CodingKeys: String, CodingKey {
        case id, kind, amount, description, metadata
        case balanceAfter = "balance_after"
        case apiKeyID = "api_key_id"
        case grantID = "grant_id"
        case holdID = "hold_id"
        case createdAt = "created_at"
    }
}

extension LedgerEntry {
    /// Every kind of entry the ledger holds (`credit_transactions_kind_check`).
    public static let kinds = ["grant", "consume", "refund", "expire", "capture", "adjust"]
}

/// A page of the ledger, newest first. `next_cursor` fetches the next (older) page; null on the last.
public struct LedgerPage: Sendable, Codable, Equatable {
    public var accountID: UUID
    public var transactions: [LedgerEntry]
    public var hasMore: Bool
    public var nextCursor: String?

    enum CodingKeys: String, CodingKey {
        case transactions
        case accountID = "account_id"
        case hasMore = "has_more"
        case nextCursor = "next_cursor"
    }
}

extension Ledger {
    public static let maximumPageSize = 100

    /// The account's ledger, newest first, `limit` entries (1…100) after `cursor` (a previous page's
    /// `next_cursor`). Entries never change once written, so a cursor stays valid however long it is kept.
    /// Unauthenticated when `liveKey` is given and the key is revoked (see `Ledger+Reads`).
    /// With `key` or `kind`, only the entries of that API key or of that kind (`LedgerEntry.kinds`).
    public func transactions(
        of owner: AccountOwner, liveKey: UUID? = nil, limit: Int = 20, cursor: String? = nil, key: UUID? = nil, kind: String? = nil,
        context: QueryContext
    ) async throws -> LedgerPage {
        let before = try Self.pageStart(limit: limit, cursor: cursor)
        if let kind, !LedgerEntry.kinds.contains(kind) {
            throw CreditsError(.invalidInput, "kind must be one of \(LedgerEntry.kinds.joined(separator: ", "))")
        }
        // One statement with no lock when nothing is due (see `Ledger+Reads`); else settled first, so the page
        // shows what the balance shows. A filtered page is read the second way.
        if key == nil, kind == nil, let committed = try await database.connection(context, { connection in
            try await Self.committedPage(of: owner, liveKey: liveKey, before: before, limit: limit, on: connection)
        }) {
            return committed
        }
        return try await database.transaction(context) { connection in
            try await Self.requireLive(liveKey, on: connection)
            let (account, _, _) = try await lockAccount(of: owner, on: connection)
            var entries: [LedgerEntry] = []
            for try await row in try await connection.query(
                """
                SELECT \(unescaped: Self.entryColumns)
                FROM credit_transactions t WHERE t.account_id = \(account) AND t.id < \(before)
                  AND (\(key)::uuid IS NULL OR t.api_key_id = \(key)) AND (\(kind)::text IS NULL OR t.kind = \(kind))
                ORDER BY t.id DESC LIMIT \(limit + 1)
                """
            ).decode(EntryRow.self) {
                try entries.append(Self.entry(row))
            }
            return Self.page(account, entries, limit: limit)
        }
    }

    /// The page as committed, in one statement; nil when the account does not exist, has something due or
    /// `liveKey` is not live.
    static func committedPage(of owner: AccountOwner, liveKey: UUID?, before: Int64, limit: Int, on connection: DatabaseConnection) async throws -> LedgerPage? {
        var account: UUID?
        var entries: [LedgerEntry] = []
        for (id, due, id2, kind, amount, after, description, metadata, key, grant, hold, created) in try await connection.run(
            CommittedPage(owner: owner, liveKey: liveKey, before: before, limit: limit)
        ) {
            if due { return nil }
            account = id
            if let id2, let kind, let amount, let after, let created {
                try entries.append(Self.entry((id2, kind, amount, after, description, metadata, key, grant, hold, created)))
            }
        }
        return account.map { page($0, entries, limit: limit) }
    }

    typealias EntryRow = (Int64, String, Int64, Int64, String?, String?, UUID?, UUID?, UUID?, Date)

    /// A ledger entry's columns (of `credit_transactions t`), in `EntryRow`'s order.
    static let entryColumns = "t.id, t.kind, t.amount, t.balance_after, t.description, t.metadata::text, t.api_key_id, t.grant_id, t.hold_id, t.created_at"

    static func entry(_ row: EntryRow) throws -> LedgerEntry {
        let (id, kind, amount, after, description, metadata, key, grant, hold, created) = row
        let value = try metadata.map { try JSONDecoder().decode(JSONValue.self, from: Data($0.utf8)) }
        return LedgerEntry(
            id: id, kind: kind, amount: amount, balanceAfter: after, description: description, metadata: value,
            apiKeyID: key, grantID: grant, holdID: hold, createdAt: created)
    }

    /// `entries` (up to `limit + 1`, newest first) as a page of `limit`.
    static func page(_ account: UUID, _ entries: [LedgerEntry], limit: Int) -> LedgerPage {
        var entries = entries
        let hasMore = entries.count > limit
        if hasMore { entries.removeLast() }
        return LedgerPage(
            accountID: account, transactions: entries, hasMore: hasMore,
            nextCursor: hasMore ? entries.last.map { encodeCursor($0.id) } : nil)
    }

    /// A cursor is the id of the last entry of the page before, in decimal: the next page starts below it. Any
    /// string of the documented form (`cursorPattern`) is a valid cursor.
    public static let cursorPattern = "^[1-9][0-9]{0,17}$"

    static func encodeCursor(_ id: Int64) -> String { String(id) }

    /// The id a page of `limit` entries starts below, for any newest-first log paged by id (the ledger, the
    /// admin audit log): `cursor`'s, or the top. Invalid-input for a limit outside 1…`maximumPageSize` or a
    /// cursor not of the documented form.
    static func pageStart(limit: Int, cursor: String?) throws -> Int64 {
        guard (1...maximumPageSize).contains(limit) else {
            throw CreditsError(.invalidInput, "limit must be between 1 and \(maximumPageSize)")
        }
        guard let cursor else { return .max }
        guard let id = decodeCursor(cursor) else {
            throw CreditsError(.invalidInput, "cursor must be a page's next_cursor (a positive whole number of up to 18 digits); pass it unchanged")
        }
        return id
    }

    static func decodeCursor(_ cursor: String) -> Int64? {
        guard (1...18).contains(cursor.utf8.count), cursor.utf8.allSatisfy({ (0x30...0x39).contains($0) }), !cursor.hasPrefix("0") else { return nil }
        return Int64(cursor)
    }

}

/// The ledger page read (`Ledger.committedPage`): up to `limit + 1` entries below `before`, newest first.
struct CommittedPage: HotStatement {
    typealias Row = (UUID, Bool, Int64?, String?, Int64?, Int64?, String?, String?, UUID?, UUID?, UUID?, Date?)
    static let sql = """
        WITH \(Ledger.readableAccount)
        SELECT acct.id, acct.due, t.* FROM acct LEFT JOIN LATERAL (
            SELECT \(Ledger.entryColumns) FROM credit_transactions t
            WHERE t.account_id = acct.id AND t.id < $4 AND NOT acct.due ORDER BY t.id DESC LIMIT $5
        ) t ON true
        ORDER BY t.id DESC
        """

    var owner: AccountOwner
    var liveKey: UUID?
    var before: Int64
    var limit: Int

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 5)
        bindings.appendOwner(owner)
        bindings.append(liveKey)
        bindings.append(before)
        bindings.append(Int64(limit + 1))
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}
