import Foundation
import Hummingbird
import HTTPTypes
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// An address range, `192.0.2.0/24` or `2001:db8::/32` (a bare address is the range of one): the proxies whose
/// `X-Forwarded-For` the server believes (`--trusted-proxy`).
public struct AddressRange: Sendable, Equatable, CustomStringConvertible {
    let bytes: [UInt8]
    let prefix: Int
    public let description: String

    /// nil when `text` is not an IPv4 or IPv6 address with an optional `/bits` in range.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1).map(String.init)
        guard let first = parts.first, let bytes = Self.parse(first) else { return nil }
        let bits = parts.count == 2 ? Int(parts[1]) : bytes.count * 8
        guard let bits, bits >= 0, bits <= bytes.count * 8 else { return nil }
        self.bytes = bytes
        self.prefix = bits
        self.description = text
    }

    /// Whether `address` (text, as `parse` reads it) is inside the range.
    public func contains(_ address: String) -> Bool {
        guard let other = Self.parse(address), other.count == bytes.count else { return false }
        var left = prefix
        for (a, b) in zip(bytes, other) where left > 0 {
            let mask: UInt8 = left >= 8 ? 0xFF : ~(0xFF >> UInt8(left))
            if a & mask != b & mask { return false }
            left -= 8
        }
        return true
    }

    /// The address's bytes: 4 for IPv4, 16 for IPv6.
    static func parse(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }
}

extension TallyRequestContext {
    /// The client's address, as throttling counts it: the socket's peer; when that peer is a trusted proxy, the
    /// nearest address in `X-Forwarded-For` that is not one (proxies append what they saw, so the rightmost
    /// untrusted entry is the one no client can forge).
    func clientAddress(_ request: Request, trusting proxies: [AddressRange]) -> String {
        let peer = remoteAddress?.ipAddress ?? "unknown"
        guard !proxies.isEmpty, proxies.contains(where: { $0.contains(peer) }) else { return peer }
        let forwarded = request.headers[values: HTTPField.Name("X-Forwarded-For")!]
            .flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: .whitespaces) }
        for address in forwarded.reversed() where AddressRange.parse(address) != nil {
            if !proxies.contains(where: { $0.contains(address) }) { return address }
        }
        return peer
    }
}
