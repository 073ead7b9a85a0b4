import Foundation
import TallyPostgres

/// A certificate authority made by openssl for a test, a server certificate it signs for the name `localhost`
/// only (not 127.0.0.1), and another CA that signed nothing (to prove a client refuses what it was not told to trust).
public struct TestCertificates: Sendable {
    public let folder: String
    public var ca: String { folder + "/ca.crt" }
    public var serverCertificate: String { folder + "/server.crt" }
    public var serverKey: String { folder + "/server.key" }
    public var otherCA: String { folder + "/other.crt" }

    /// Makes them in `folder` (created if need be).
    public static func make(in folder: String) async throws -> TestCertificates {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let script = """
            set -e
            cd "$1"
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt -days 2 \\
              -subj "/CN=Tally test CA" -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr -subj "/CN=localhost"
            printf 'subjectAltName=DNS:localhost\\nextendedKeyUsage=serverAuth\\n' > server.ext
            openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile server.ext
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout other.key -out other.crt -days 2 \\
              -subj "/CN=Another CA" -addext basicConstraints=critical,CA:TRUE
            """
        let made = try await Command.run("/bin/bash", ["-c", script, "certificates", folder])
        guard made.status == 0 else { throw TallyPostgresError(.commandFailed, "openssl could not make test certificates: \(made.output)") }
        return TestCertificates(folder: folder)
    }
}
