/// One SQL statement of a migration, with the line it starts on (1-based) in its file.
public struct SQLStatement: Sendable, Equatable {
    public var text: String
    public var line: Int
}

/// Splits SQL text into statements at top-level semicolons, the way PostgreSQL's own parser sees them:
/// semicolons inside quotes, dollar quotes, comments and `BEGIN ATOMIC … END` bodies do not split.
public enum SQLStatements {
    public static func split(_ sql: String, startLine: Int = 1) -> [SQLStatement] {
        let chars = Array(sql.unicodeScalars)
        var statements: [SQLStatement] = []
        var current = String.UnicodeScalarView()
        var line = startLine
        var statementLine: Int?
        var i = 0
        var atomicDepth = 0

        func flush() {
            let text = String(current).trimmingCharacters(in: .whitespacesAndNewlines)
            if !isOnlyComments(text) {
                statements.append(SQLStatement(text: text, line: statementLine ?? line))
            }
            current = String.UnicodeScalarView()
            statementLine = nil
        }
        func append(_ c: Unicode.Scalar) {
            if c == "\n" { line += 1 }
            current.append(c)
        }
        func peek(_ offset: Int) -> Unicode.Scalar? { i + offset < chars.count ? chars[i + offset] : nil }

        var previousWord = ""
        while i < chars.count {
            let c = chars[i]
            // -- comment to end of line
            if c == "-", peek(1) == "-" {
                while i < chars.count, chars[i] != "\n" { append(chars[i]); i += 1 }
                continue
            }
            // /* nested */ comment
            if c == "/", peek(1) == "*" {
                var depth = 0
                while i < chars.count {
                    if chars[i] == "/", peek(1) == "*" { depth += 1; append(chars[i]); append(chars[i + 1]); i += 2; continue }
                    if chars[i] == "*", peek(1) == "/" {
                        depth -= 1; append(chars[i]); append(chars[i + 1]); i += 2
                        if depth == 0 { break }
                        continue
                    }
                    append(chars[i]); i += 1
                }
                continue
            }
            if statementLine == nil, !c.properties.isWhitespace {
                statementLine = line
            }
            // 'string', E'string' with backslash escapes, "identifier"
            if c == "'" || c == "\"" {
                let escapes = c == "'" && (previousCharacterIsE(current))
                append(c); i += 1
                while i < chars.count {
                    let d = chars[i]
                    if escapes, d == "\\", i + 1 < chars.count { append(d); append(chars[i + 1]); i += 2; continue }
                    append(d); i += 1
                    if d == c {
                        if i < chars.count, chars[i] == c { append(chars[i]); i += 1; continue }  // doubled quote
                        break
                    }
                }
                    continue
            }
            // $tag$ … $tag$
            if c == "$", let tag = dollarTag(chars, at: i) {
                for s in tag.unicodeScalars { append(s) }
                i += tag.unicodeScalars.count
                while i < chars.count {
                    if chars[i] == "$", dollarTag(chars, at: i) == tag {
                        for s in tag.unicodeScalars { append(s) }
                        i += tag.unicodeScalars.count
                        break
                    }
                    append(chars[i]); i += 1
                }
                    continue
            }
            if c.properties.isAlphabetic || c == "_" {
                var w = ""
                while i < chars.count, chars[i].properties.isAlphabetic || chars[i] == "_" || ("0"..."9").contains(chars[i]) {
                    w.unicodeScalars.append(chars[i]); append(chars[i]); i += 1
                }
                let upper = w.uppercased()
                if upper == "ATOMIC", previousWord == "BEGIN" { atomicDepth += 1 }
                else if upper == "END", atomicDepth > 0 { atomicDepth -= 1 }
                previousWord = upper
                continue
            }
            if c == ";", atomicDepth == 0 {
                i += 1
                flush()
                previousWord = ""
                continue
            }
            append(c)
            i += 1
        }
        flush()
        return statements
    }

    private static func previousCharacterIsE(_ text: String.UnicodeScalarView) -> Bool {
        guard let last = text.last, last == "E" || last == "e" else { return false }
        let beforeLast = text.dropLast().last
        return beforeLast.map { !($0.properties.isAlphabetic || $0 == "_" || ("0"..."9").contains($0)) } ?? true
    }

    /// "$$" or "$tag$" starting at `index`, if one does.
    private static func dollarTag(_ chars: [Unicode.Scalar], at index: Int) -> String? {
        var j = index + 1
        var tag = "$"
        while j < chars.count {
            let c = chars[j]
            if c == "$" { return tag + "$" }
            guard c.properties.isAlphabetic || c == "_" || (j > index + 1 && ("0"..."9").contains(c)) else { return nil }
            tag.unicodeScalars.append(c)
            j += 1
        }
        return nil
    }

    /// True for text that is empty once comments are removed.
    static func isOnlyComments(_ text: String) -> Bool {
        var rest = Substring(text)
        while true {
            rest = rest.drop(while: { $0.isWhitespace })
            if rest.isEmpty { return true }
            if rest.hasPrefix("--") {
                rest = rest.drop(while: { $0 != "\n" })
            } else if rest.hasPrefix("/*"), let end = rest.range(of: "*/") {
                rest = rest[end.upperBound...]
            } else {
                return false
            }
        }
    }
}
