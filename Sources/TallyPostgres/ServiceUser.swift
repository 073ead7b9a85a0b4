#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The unprivileged OS user that runs the embedded PostgreSQL when Tally itself runs as root
/// (PostgreSQL refuses to start as root).
public struct ServiceUser: Sendable, Equatable {
    public var name: String
    public var uid: UInt32
    public var gid: UInt32

    /// `nil` when Tally is not root: the cluster then runs as the current user.
    /// As root: `TALLY_POSTGRES_USER` or `postgres`, which must exist.
    public static func forCurrentProcess(
        environment: [String: String]
    ) throws(TallyPostgresError) -> ServiceUser? {
        guard geteuid() == 0 else { return nil }
        let name = environment["TALLY_POSTGRES_USER"].flatMap { $0.isEmpty ? nil : $0 } ?? "postgres"
        guard let user = named(name) else {
            throw TallyPostgresError(
                .noServiceUser,
                """
                PostgreSQL refuses to run as root, and there is no OS user "\(name)" to run it as.
                Create one (apt-get install postgresql creates "postgres"; or useradd --system --home-dir /var/lib/postgresql postgres), set TALLY_POSTGRES_USER to an existing unprivileged user, or run tally as an ordinary user.
                """
            )
        }
        return user
    }

    /// The OS user called `name`, if there is one.
    public static func named(_ name: String) -> ServiceUser? {
        guard let entry = getpwnam(name) else { return nil }
        return ServiceUser(name: name, uid: entry.pointee.pw_uid, gid: entry.pointee.pw_gid)
    }

    /// Gives `path` to this user, as PostgreSQL wants its data folder: owned by it, mode 0700.
    func takeOwnership(of path: String, mode: mode_t = 0o700) {
        _ = chown(path, uid, gid)
        _ = chmod(path, mode)
    }

    /// Whether this user can enter `directory` (and so every folder above it).
    func canEnter(_ directory: String) async -> Bool {
        (try? await Command.run("/usr/bin/test", ["-x", directory], as: self).succeeded) ?? false
    }
}
