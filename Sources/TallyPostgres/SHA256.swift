import Crypto
import Foundation

/// Lowercase hex SHA-256: a migration's hash (as Drizzle's `crypto.createHash('sha256').update(text).digest('hex')`),
/// and what is stored of a session token, an API key or a request's content. Here, in the lowest module,
/// because the migration engine and the credits store both use it.
public func sha256Hex(_ data: Data) -> String {
    SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
}
