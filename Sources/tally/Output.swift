import ArgumentParser
import Foundation

#if canImport(Glibc)
import Glibc
#endif

// The one place the commands write to the terminal: messages on stderr, JSON and tables on stdout, and the
// question before anything destructive.

func printErr(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// Asks on the terminal; without one, requires --yes.
func confirm(_ question: String, yes: Bool) throws -> Bool {
    if yes { return true }
    guard isatty(STDIN_FILENO) != 0 else {
        throw ValidationError("\(question) This changes the database; run again with --yes to confirm.")
    }
    FileHandle.standardError.write(Data("\(question) [y/N] ".utf8))
    let answer = readLine()?.trimmingCharacters(in: .whitespaces).lowercased()
    return answer == "y" || answer == "yes"
}

/// Prints rows as left-aligned columns, the first row as the header.
func printTable(_ rows: [[String]]) {
    guard let columns = rows.map(\.count).max() else { return }
    var widths = Array(repeating: 0, count: columns)
    for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
    for row in rows {
        let line = row.enumerated().map { i, cell in
            i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
        }.joined(separator: "  ")
        print("  " + line)
    }
}

/// Prints `value` as pretty JSON on stdout.
func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.dateEncodingStrategy = .iso8601
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}
