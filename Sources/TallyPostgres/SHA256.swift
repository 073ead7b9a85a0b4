import Crypto
import Foundation

/// Lowercase hex SHA-256: a migration's hash (as Drizzle's `crypto.createHash('sha256').update(text).digest('hex')`),
/// and what is stored of a session token, an API key or a request's content. Here, in the lowest module,
/// because the migration engine and the credits store both use it.
public func sha256Hex(_ data: Data) -> String {
    lowercaseHex(SHA256.hash(data: data))
}

/// `bytes` as lowercase hex, two digits each. Every request with a token hashes it, so this is by table, not
/// `String(format:)` per byte (which was a tenth of the server's CPU on a balance read).
public func lowercaseHex(_ bytes: some Sequence<UInt8>) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var hex: [UInt8] = []
    hex.reserveCapacity(bytes.underestimatedCount * 2)
    for byte in bytes {
        hex.append(digits[Int(byte >> 4)])
        hex.append(digits[Int(byte & 0x0f)])
    }
    return String(decoding: hex, as: UTF8.self)
}
