/// `bytes` random bytes from the system's secure generator, as lowercase hex: passwords, tokens, keys.
public func randomHex(bytes: Int) -> String {
    var generator = SystemRandomNumberGenerator()
    return (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
}
