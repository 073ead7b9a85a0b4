import Hummingbird
import NIOCore
import Testing
@testable import TallyServer

@Suite struct RequestBodyTests {
    /// U+0000 is refused wherever JSON can write it (a string or a key, escaped), and only there: an escaped
    /// backslash followed by the text "u0000" is no NUL.
    @Test(arguments: [
        (#"{"a": "\u0000"}"#, true),
        (#"{"\u0000": 1}"#, true),
        (#"{"a": {"b": ["ok", "x\u0000y"]}}"#, true),
        (#"{"a": "\\\u0000"}"#, true),
        (#"{"a": "\\u0000"}"#, false),
        (#"{"a": "u0000"}"#, false),
        (#"{"a": "\u00001"}"#, true),
        (#"{"a": "\u0001"}"#, false),
        (#"{"a": "\"}"#, false),
    ])
    func escapedNULIsFound(json: String, hasNUL: Bool) {
        #expect(Request.containsEscapedNUL(ByteBuffer(string: json)) == hasNUL, "\(json)")
    }
}
