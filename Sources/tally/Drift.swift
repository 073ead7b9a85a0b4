import ArgumentParser
import Foundation
import TallyMigrate
import TallyPostgres

extension DB {
    struct DriftCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "drift",
            abstract: "Compare the live database with what the apps declare: a Drizzle snapshot, SQLAlchemy or SQLModel metadata.",
            discussion: """
                --drizzle DIR reads the newest snapshot of a Drizzle migrations folder (meta/NNNN_snapshot.json, \
                versions 5 to 7, or the 1.0 layout's <timestamp>_<name>/snapshot.json, version 8). What it declares \
                is created in a scratch database on the same server (the user needs CREATEDB), so PostgreSQL spells \
                both sides, then both catalogs are compared over the snapshot's schemas: tables, columns (type, \
                nullability, default, identity, generated), primary keys, foreign keys with their actions, unique \
                and check constraints, indexes, enums. --sqlalchemy module:attribute imports the app's metadata in its \
                own Python (--python, --app-dir) through a script Tally ships, which has SQLAlchemy compile each \
                table for PostgreSQL and lists foreign keys and relationships; a model covers only the tables and \
                columns it maps (a column it leaves out counts when the database requires it), and a relationship no \
                foreign key enforces is a finding. Each finding names the object, both sides and the fix. A name \
                that differs alone is a notice. Exit status: 0 no drift, 2 drift, 1 error.
                """)
        @Option(help: ArgumentHelp("A Drizzle migrations folder; its newest snapshot is the app's declaration.", valueName: "dir"))
        var drizzle: String?
        @Option(help: ArgumentHelp("The app's SQLAlchemy or SQLModel metadata, as module:attribute (app.models:SQLModel.metadata).", valueName: "spec"))
        var sqlalchemy: String?
        @Option(help: ArgumentHelp("The app's Python, with SQLAlchemy installed (default: python3 on PATH).", valueName: "path"))
        var python: String = "python3"
        @Option(help: ArgumentHelp("Where the app's modules are imported from (default: the working directory).", valueName: "dir"))
        var appDir: String = "."
        @Option(help: ArgumentHelp("Output: text, json, or github (GitHub Actions annotations).", valueName: "format"))
        var format: DriftFormat = .text
        @Option(help: ArgumentHelp("The ownership manifest (TOML): check every app it names that has a drizzle or sqlalchemy source, each only on the tables it uses.", valueName: "file"))
        var owners: String?
        @Option(help: ArgumentHelp("History table to leave out, as schema.table.", valueName: "table"))
        var historyTable: String = HistoryTable.drizzleDefault.description
        @OptionGroup var database: DatabaseOptions

        enum DriftFormat: String, ExpressibleByArgument, CaseIterable { case text, json, github }

        struct Reports: Encodable {
            var reports: [DriftReport]
            var has_drift: Bool
        }

        func validate() throws {
            guard drizzle != nil || sqlalchemy != nil || owners != nil else {
                throw ValidationError("name what the apps declare: --drizzle DIR, --sqlalchemy module:attribute, or --owners FILE")
            }
        }

        func run() async throws {
            var declarations: [(app: OwnershipManifest.App?, declaration: Declaration)] = []
            if let drizzle { declarations.append((nil, try DrizzleSnapshot.newest(in: drizzle))) }
            if let sqlalchemy { declarations.append((nil, try await SQLAlchemyMetadata.read(spec: sqlalchemy, python: python, directory: appDir))) }
            let manifest = try owners.map { try OwnershipManifest.load(path: $0) }
            for app in manifest?.apps ?? [] {
                if let folder = app.drizzle { declarations.append((app, try DrizzleSnapshot.newest(in: folder))) }
                if let spec = app.sqlalchemy {
                    declarations.append((app, try await SQLAlchemyMetadata.read(spec: spec, python: app.python ?? python, directory: app.appDirectory ?? appDir)))
                }
            }
            let history = try HistoryTable(parsing: historyTable)
            let settings = try await database.resolve(quiet: format != .text)
            var reports: [DriftReport] = []
            for (app, declaration) in declarations {
                var report = try await Drift.check(declaration, against: settings, historyTable: history) { line in
                    if format == .text { printErr(line) }
                }
                if let app, let manifest {
                    // Each app only on the tables it uses: another app's table is not this one's extra table.
                    report.findings.removeAll { finding in
                        guard finding.kind == .extraTable else { return false }
                        let parts = finding.object.split(separator: ".").map(String.init)
                        let table = parts.count == 2 ? QualifiedName(schema: parts[0], name: parts[1]) : QualifiedName(name: finding.object)
                        return manifest.apps.contains { $0.name != app.name && $0.uses(table) }
                    }
                    report.source = "\(app.name) (\(declaration.source))"
                }
                reports.append(report)
            }
            switch format {
            case .json: try printJSON(Reports(reports: reports, has_drift: reports.contains(where: \.hasDrift)))
            case .github: for line in reports.flatMap(\.githubAnnotations) { print(line) }
            case .text:
                for report in reports {
                    if report.findings.isEmpty {
                        print("No drift: the database has what \(report.source) declares.")
                    } else {
                        let drift = report.findings.filter { !$0.notice }.count
                        print("\(drift) difference(s) between the database and \(report.source)\(drift < report.findings.count ? ", \(report.findings.count - drift) notice(s)" : ""):")
                        for finding in report.findings { print("  \(finding.notice ? "notice " : "")\(finding.message)") }
                    }
                }
            }
            if reports.contains(where: \.hasDrift) { throw ExitCode(2) }
        }
    }
}
