import Foundation

/// Tally's own schema: `Migrations/`, a Drizzle migrations folder bundled with the binary so that
/// `tally migrate` works without `--dir`. (Copied as a whole folder, so a new migration file needs no
/// change to Package.swift.)
public enum TallySchema {
    /// The bundled copy of `Migrations/` (meta/_journal.json and the TAG.sql files).
    public static var folder: String {
        (Bundle.module.resourcePath ?? Bundle.module.bundlePath) + "/Migrations"
    }
}
