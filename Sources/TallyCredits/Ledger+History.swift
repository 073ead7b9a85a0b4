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
    public func transactions(of owner: AccountOwner, limit: Int = 20, cursor: String? = nil, context: QueryContext) async throws -> LedgerPage {
        guard (1...Self.maximumPageSize).contains(limit) else {
            throw CreditsError(.invalidInput, "limit must be between 1 and \(Self.maximumPageSize)")
        }
        let before: Int64
        if let cursor {
            guard let id = Self.decodeCursor(cursor) else {
                throw CreditsError(.invalidInput, "cursor must be a page's next_cursor (a positive whole number of up to 18 digits); pass it unchanged")
            }
            before = id
        } else {
            before = .max
        }
        return try await database.transaction(context) { connection in
            // Settle expiries first, so the page shows what the balance shows.
            let (account, _, _) = try await lockAccount(of: owner, on: connection)
            var entries: [LedgerEntry] = []
            for try await (id, kind, amount, after, description, metadata, key, grant, hold, created) in try await connection.query(
                """
                SELECT id, kind, amount, balance_after, description, metadata::text, api_key_id, grant_id, hold_id, created_at
                FROM credit_transactions WHERE account_id = \(account) AND id < \(before)
                ORDER BY id DESC LIMIT \(limit + 1)
                """
            ).decode((Int64, String, Int64, Int64, String?, String?, UUID?, UUID?, UUID?, Date).self) {
                let value = try metadata.map { try JSONDecoder().decode(JSONValue.self, from: Data($0.utf8)) }
                entries.append(LedgerEntry(
                    id: id, kind: kind, amount: amount, balanceAfter: after, description: description, metadata: value,
                    apiKeyID: key, grantID: grant, holdID: hold, createdAt: created))
            }
            let hasMore = entries.count > limit
            if hasMore { entries.removeLast() }
            return LedgerPage(
                accountID: account, transactions: entries, hasMore: hasMore,
                nextCursor: hasMore ? entries.last.map { Self.encodeCursor($0.id) } : nil)
        }
    }

    /// A cursor is the id of the last entry of the page before, in decimal: the next page starts below it. Any
    /// string of the documented form (`cursorPattern`) is a valid cursor.
    public static let cursorPattern = "^[1-9][0-9]{0,17}$"

    static func encodeCursor(_ id: Int64) -> String { String(id) }

    static func decodeCursor(_ cursor: String) -> Int64? {
        guard (1...18).contains(cursor.utf8.count), cursor.utf8.allSatisfy({ (0x30...0x39).contains($0) }), !cursor.hasPrefix("0") else { return nil }
        return Int64(cursor)
    }

}
