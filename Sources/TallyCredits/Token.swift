/// The shape of Tally's secrets, after GitHub's tokens: a prefix that says what it is (`tly_` an API key,
/// `tly_sess_` a session), 43 base62 characters holding 256 random bits, then 6 base62 characters of the
/// CRC-32 (IEEE, as zlib's `crc32`) of everything before them. A secret scanner recognises one by
/// `tly_[0-9A-Za-z]{49}` or `tly_sess_[0-9A-Za-z]{49}` and confirms it offline with the checksum, and the
/// server refuses a mistyped one without a database lookup. Secrets of the older shape (prefix + 64 hex
/// digits) carry no checksum and are still accepted.
public enum Token {
    static let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)
    public static let randomLength = 43
    public static let checksumLength = 6

    /// A new secret: `prefix`, fresh random characters, their checksum.
    public static func make(prefix: String) -> String {
        var generator = SystemRandomNumberGenerator()
        var body = [UInt8]()
        body.reserveCapacity(randomLength)
        while body.count < randomLength {
            // 62 × 4 = 248: bytes from 248 up are drawn again, so every character is equally likely.
            let byte = UInt8.random(in: 0...255, using: &generator)
            if byte < 248 { body.append(alphabet[Int(byte % 62)]) }
        }
        let unchecked = prefix + String(decoding: body, as: UTF8.self)
        return unchecked + checksum(of: unchecked)
    }

    /// False when `token` has the checked shape after `prefix` but its checksum is wrong (a typo, a forgery);
    /// true otherwise, including for the older unchecked shape, which only the database can judge.
    public static func mayBeGenuine(_ token: String, prefix: String) -> Bool {
        let bytes = Array(token.utf8)
        let prefixLength = prefix.utf8.count
        guard token.hasPrefix(prefix), bytes.count == prefixLength + randomLength + checksumLength,
              bytes[prefixLength...].allSatisfy({ alphabet.contains($0) }) else { return true }
        let split = bytes.count - checksumLength
        return checksum(of: String(decoding: bytes[..<split], as: UTF8.self)) == String(decoding: bytes[split...], as: UTF8.self)
    }

    /// The CRC-32 of `text`'s UTF-8 in base62, most significant digit first, padded with `0` to 6 characters.
    static func checksum(of text: String) -> String {
        var value = crc32(Array(text.utf8))
        var digits = [UInt8](repeating: alphabet[0], count: checksumLength)
        for index in stride(from: checksumLength - 1, through: 0, by: -1) {
            digits[index] = alphabet[Int(value % 62)]
            value /= 62
        }
        return String(decoding: digits, as: UTF8.self)
    }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = (crc >> 1) ^ (0xEDB8_8320 & (0 &- (crc & 1))) }
        }
        return ~crc
    }
}
