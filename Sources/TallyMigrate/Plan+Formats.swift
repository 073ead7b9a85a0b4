import Foundation

/// A plan's findings for CI: GitHub Actions annotations and SARIF 2.1.0 for code-scanning tools, each finding
/// pointing at its migration file and line.
extension Plan {
    /// One finding where it is: the file (relative to `base` when inside it), the statement's line.
    public struct Located: Sendable, Equatable {
        public var file: String
        public var line: Int
        public var finding: Finding
    }

    /// Every finding with its file and line, in folder and statement order.
    public func located(relativeTo base: String) -> [Located] {
        migrations.flatMap { migration in
            migration.statements.flatMap { statement in
                statement.findings.map { Located(file: Self.relative(migration.file, to: base), line: statement.line, finding: $0) }
            }
        }
    }

    /// `path` relative to `base` (a directory) when it lies inside it; else as it is.
    static func relative(_ path: String, to base: String) -> String {
        let file = URL(fileURLWithPath: path).standardizedFileURL.path
        let directory = URL(fileURLWithPath: base).standardizedFileURL.path
        let prefix = directory.hasSuffix("/") ? directory : directory + "/"
        return file.hasPrefix(prefix) ? String(file.dropFirst(prefix.count)) : file
    }

    /// GitHub Actions workflow commands, one line per finding: `::error file=…,line=…,title=…::message`
    /// (warning for a warning, notice for information).
    public func githubAnnotations(relativeTo base: String) -> [String] {
        located(relativeTo: base).map { item in
            let command = switch item.finding.severity {
            case .error: "error"
            case .warning: "warning"
            case .info: "notice"
            }
            let properties = "file=\(Self.escapeProperty(item.file)),line=\(item.line),title=\(Self.escapeProperty("tally \(item.finding.rule)"))"
            return "::\(command) \(properties)::\(Self.escapeData(item.finding.message))"
        }
    }

    /// GitHub's escaping of a workflow command's message.
    static func escapeData(_ text: String) -> String {
        text.replacingOccurrences(of: "%", with: "%25").replacingOccurrences(of: "\r", with: "%0D").replacingOccurrences(of: "\n", with: "%0A")
    }

    /// GitHub's escaping of a workflow command's property value.
    static func escapeProperty(_ text: String) -> String {
        escapeData(text).replacingOccurrences(of: ":", with: "%3A").replacingOccurrences(of: ",", with: "%2C")
    }

    /// The plan as a SARIF 2.1.0 log: one run of the tool `tally`, a rule per rule name found, a result per
    /// finding (level error, warning or note) located at its file and line.
    public func sarif(relativeTo base: String, version: String) -> SARIFLog {
        let items = located(relativeTo: base)
        let rules = Array(Set(items.map(\.finding.rule.rawValue))).sorted()
        let results = items.map { item in
            let level = switch item.finding.severity {
            case .error: "error"
            case .warning: "warning"
            case .info: "note"
            }
            return SARIFLog.Result(
                ruleId: item.finding.rule.rawValue,
                ruleIndex: rules.firstIndex(of: item.finding.rule.rawValue) ?? 0,
                level: level,
                message: .init(text: item.finding.message),
                locations: [.init(physicalLocation: .init(artifactLocation: .init(uri: item.file), region: .init(startLine: item.line)))])
        }
        let driver = SARIFLog.Driver(
            name: "tally", version: version,
            rules: rules.map { .init(id: $0, shortDescription: .init(text: LintRules.named($0)?.tally ?? $0)) })
        return SARIFLog(runs: [.init(tool: .init(driver: driver), results: results)])
    }
}

/// A SARIF 2.1.0 log, as much of it as a migration plan fills (`Plan.sarif`).
public struct SARIFLog: Sendable, Codable {
    public var version = "2.1.0"
    public var schema = "https://json.schemastore.org/sarif-2.1.0.json"
    public var runs: [Run]

    enum CodingKeys: String, CodingKey {
        case version, runs
        case schema = "$schema"
    }

    public struct Run: Sendable, Codable {
        public var tool: Tool
        public var results: [Result]
    }

    public struct Tool: Sendable, Codable {
        public var driver: Driver
    }

    public struct Driver: Sendable, Codable {
        public var name: String
        public var version: String
        public var rules: [Rule]
    }

    public struct Rule: Sendable, Codable {
        public var id: String
        public var shortDescription: Message
    }

    public struct Result: Sendable, Codable {
        public var ruleId: String
        public var ruleIndex: Int
        public var level: String
        public var message: Message
        public var locations: [Location]
    }

    public struct Message: Sendable, Codable {
        public var text: String
    }

    public struct Location: Sendable, Codable {
        public var physicalLocation: PhysicalLocation
    }

    public struct PhysicalLocation: Sendable, Codable {
        public var artifactLocation: ArtifactLocation
        public var region: Region
    }

    public struct ArtifactLocation: Sendable, Codable {
        public var uri: String
    }

    public struct Region: Sendable, Codable {
        public var startLine: Int
    }
}
