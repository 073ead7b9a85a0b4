import Foundation

extension UUID {
    /// The id as PostgreSQL prints it and RFC 9562 recommends: lowercase hexadecimal (`uuidString` is uppercase).
    public var lowercasedString: String { uuidString.lowercased() }
}
