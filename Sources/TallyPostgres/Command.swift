import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The result of running an external program: exit status and its combined stdout and stderr.
public struct CommandResult: Sendable {
    public var status: Int32
    public var output: String
    public var succeeded: Bool { status == 0 }
}

/// Runs PostgreSQL's own programs (initdb, pg_ctl, pg_dump, …) with `posix_spawn` and `waitpid`; the child
/// inherits no file descriptor but its standard input, output and error.
///
/// Output goes to a file rather than a pipe: `pg_ctl start` leaves a postmaster behind that would hold a
/// pipe open forever, and a file cannot fill up and block the child. Foundation's `Process` is not used:
/// on Linux it can miss a child's exit when many threads spawn at once.
public enum Command {
    /// A started child process.
    public struct Child: Sendable {
        public let pid: pid_t

        /// Blocks until the child exits; returns its exit status (128 + signal when killed).
        public func wait() -> Int32 {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 {
                if errno != EINTR { return -1 }
            }
            return Self.exitCode(status)
        }

        /// Polls until the child exits, without blocking a thread of the cooperative pool.
        public func waitAsync(pollEvery interval: Duration = .milliseconds(20)) async -> Int32 {
            var status: Int32 = 0
            while true {
                let result = waitpid(pid, &status, WNOHANG)
                if result == pid { return Self.exitCode(status) }
                if result < 0 && errno != EINTR { return -1 }
                try? await Task.sleep(for: interval)
            }
        }

        static func exitCode(_ status: Int32) -> Int32 {
            let signal = status & 0x7f
            return signal == 0 ? (status >> 8) & 0xff : 128 + signal
        }
    }

    /// Starts `executable` with stdin from /dev/null and stdout/stderr appended to the given files.
    public static func spawn(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String] = [:],
        as user: ServiceUser? = nil,
        stdout: String,
        stderr: String? = nil
    ) throws(TallyPostgresError) -> Child {
        var argv: [String]
        let program: String
        if let user {
            // runuser keeps the environment, so PGPASSWORD and friends still reach the child.
            program = "/usr/sbin/runuser"
            // The service user may not be able to enter our working directory; "/" always works.
            argv = [program, "-u", user.name, "--", "/usr/bin/env", "-C", "/", executable] + arguments
        } else {
            program = executable
            argv = [executable] + arguments
        }
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { _, new in new }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        if let stderr {
            posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        } else {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }

        closeInheritedDescriptors(&actions)

        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            cArgs.forEach { free($0) }
            cEnv.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, program, &actions, nil, cArgs, cEnv)
        guard rc == 0 else {
            throw TallyPostgresError(.commandFailed, "could not run \(executable): \(String(cString: strerror(rc)))")
        }
        return Child(pid: pid)
    }

    #if canImport(Glibc)
    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    /// glibc 2.34+'s `posix_spawn_file_actions_addclosefrom_np`, which Swift's Glibc module does not export.
    private static let addCloseFrom: AddCloseFrom? = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np")
        .map { unsafeBitCast($0, to: AddCloseFrom.self) }
    #endif

    /// The child gets standard input, output and error only. A postmaster that inherited our sockets (an HTTP
    /// server's listener and its clients' connections) would hold each of them open for as long as it runs:
    /// a connection the server closes would never reach its client, which would then wait forever.
    private static func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
        #if canImport(Glibc)
        if let addCloseFrom, addCloseFrom(&actions, 3) == 0 { return }
        // An older glibc: close what is open now.
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd"))?.compactMap(Int32.init) ?? []
        for descriptor in open where descriptor > 2 {
            posix_spawn_file_actions_addclose(&actions, descriptor)
        }
        #endif
    }

    /// Runs `executable` to completion and returns its status and combined output, blocking the thread: for
    /// programs that answer at once (`--version`, `pg_ctl status`) and callers that are not async.
    public static func run(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String] = [:],
        as user: ServiceUser? = nil
    ) throws(TallyPostgresError) -> CommandResult {
        let outputPath = temporaryOutput()
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        let status = try spawn(executable, arguments, environment: environment, as: user, stdout: outputPath).wait()
        return result(status, outputPath)
    }

    /// `run` for programs that take a while (initdb, `pg_ctl start`, pg_dump, pg_restore): the caller's task is
    /// suspended while the child runs, so no thread of the small cooperative pool waits in `waitpid`.
    public static func run(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String] = [:],
        as user: ServiceUser? = nil
    ) async throws(TallyPostgresError) -> CommandResult {
        let outputPath = temporaryOutput()
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        let status = try await spawn(executable, arguments, environment: environment, as: user, stdout: outputPath).waitAsync()
        return result(status, outputPath)
    }

    private static func temporaryOutput() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("tally-cmd-\(UUID().uuidString).log").path
    }

    private static func result(_ status: Int32, _ outputPath: String) -> CommandResult {
        let data = FileManager.default.contents(atPath: outputPath) ?? Data()
        return CommandResult(status: status, output: String(decoding: data, as: UTF8.self))
    }
}
