/// `bytes` random bytes from the system's secure generator, as lowercase hex: passwords, tokens, keys.
public func randomHex(bytes: Int) -> String {
    var generator = SystemRandomNumberGenerator()
    return lowercaseHex((0..<bytes).map { _ in UInt8.random(in: 0...255, using: &generator) })
}
