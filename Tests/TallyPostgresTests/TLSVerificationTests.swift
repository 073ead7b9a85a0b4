import Foundation
import PostgresNIO
import Testing
import TallyTestSupport
@testable import TallyPostgres

/// A remote database is reached with its certificate checked: `verify-full` by default, against `sslrootcert`
/// or the system's roots. Proven against a PostgreSQL serving a certificate from a CA made here by openssl.
@Suite struct TLSVerificationTests {
    @Test(.slot) func certificatesAreCheckedAgainstTheNamedAuthority() async throws {
        try await TestDatabase.withOwnCluster { _, settings in
            // A CA, and a server certificate it signs for "localhost" only, in the cluster's data directory.
            let dataDirectory = try await withSingleConnection(settings) { connection in
                var directory = ""
                for try await value in try await connection.query("SHOW data_directory").decode(String.self) { directory = value }
                return directory
            }
            let work = FileManager.default.temporaryDirectory.appendingPathComponent("tally-tls-\(UUID().uuidString.prefix(8))").path
            try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: work) }
            _ = try await TestCertificates.make(in: work)
            let script = """
                set -e
                cd "$1"
                cp server.crt server.key "$2/"
                chown --reference="$2" "$2/server.crt" "$2/server.key"
                chmod 600 "$2/server.key"
                """
            let made = try await Command.run("/bin/bash", ["-c", script, "tls", work, dataDirectory])
            #expect(made.status == 0, Comment(rawValue: made.output))
            try await withSingleConnection(settings) { connection in
                try await connection.execute("ALTER SYSTEM SET ssl_cert_file = 'server.crt'")
                try await connection.execute("ALTER SYSTEM SET ssl_key_file = 'server.key'")
                try await connection.execute("ALTER SYSTEM SET ssl = on")
                try await connection.execute("SELECT pg_reload_conf()")
            }

            func reach(_ host: String, _ query: String) async throws -> Bool {
                let url = "postgres://\(settings.user):\(settings.password ?? "")@\(host):\(settings.port)/postgres\(query)"
                return try await withSingleConnection(try ConnectionSettings(url: url)) { connection in
                    var encrypted = false
                    for try await ssl in try await connection.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").decode(Bool.self) { encrypted = ssl }
                    return encrypted
                }
            }
            func refusal(_ host: String, _ query: String) async -> String {
                do {
                    _ = try await reach(host, query)
                    return "connected"
                } catch {
                    return "\(error)"
                }
            }
            // pg_reload_conf() returns before the server has read its configuration again.
            let deadline = ContinuousClock.now + .seconds(10)
            while (try? await reach("localhost", "?sslmode=require")) != true, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
            }

            #expect(try await reach("localhost", "?sslmode=verify-full&sslrootcert=\(work)/ca.crt"))
            #expect(try await reach("127.0.0.1", "?sslmode=verify-ca&sslrootcert=\(work)/ca.crt"), "verify-ca does not check the name")
            #expect(try await reach("localhost", "?sslmode=require"), "require encrypts without checking")

            // Not signed by a trusted authority, or not for this host name: refused, saying what to do.
            let untrusted = await refusal("localhost", "?sslmode=verify-full")
            #expect(untrusted.contains("TLS certificate was not trusted") && untrusted.contains("sslrootcert"), Comment(rawValue: untrusted))
            let otherCA = await refusal("localhost", "?sslmode=verify-full&sslrootcert=\(work)/other.crt")
            #expect(otherCA.contains("TLS certificate was not trusted") && otherCA.contains("\(work)/other.crt"), Comment(rawValue: otherCA))
            let wrongName = await refusal("127.0.0.1", "?sslmode=verify-full&sslrootcert=\(work)/ca.crt")
            #expect(wrongName.contains("TLS certificate was not trusted"), Comment(rawValue: wrongName))
            #expect(!untrusted.contains(settings.password ?? "no password"), "no password in the error")
        }
    }
}
