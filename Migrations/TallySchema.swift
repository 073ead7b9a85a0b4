import Foundation

/// Tally's own schema: this folder, a Drizzle migrations folder bundled with the binary so that
/// `tally migrate` works without `--dir`.
public enum TallySchema {
    /// The bundled copy of `Migrations/` (meta/_journal.json and the TAG.sql files).
    public static var folder: String {
        Bundle.module.resourcePath ?? Bundle.module.bundlePath
    }
}
