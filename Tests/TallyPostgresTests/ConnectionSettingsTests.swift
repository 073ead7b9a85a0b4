import Testing
@testable import TallyPostgres

@Suite struct ConnectionSettingsTests {
    @Test func parsesAFullURL() throws {
        let s = try ConnectionSettings(url: "postgres://alice:s3cret@db.example.com:6543/fltr_auth?sslmode=require")
        #expect(s.endpoint == .tcp(host: "db.example.com", port: 6543))
        #expect(s.user == "alice")
        #expect(s.password == "s3cret")
        #expect(s.database == "fltr_auth")
        #expect(s.sslMode == .require)
    }

    @Test func acceptsThePostgresqlScheme() throws {
        let s = try ConnectionSettings(url: "postgresql://bob@localhost/app")
        #expect(s.endpoint == .tcp(host: "localhost", port: 5432))
        #expect(s.password == nil)
        #expect(s.sslMode == .disable, "loopback defaults to no TLS")
    }

    @Test func decodesPercentEncodedPasswordUserAndDatabase() throws {
        let s = try ConnectionSettings(url: "postgres://us%40er:p%40ss%3Aw%2Fo%3Frd%23@host/my%20db")
        #expect(s.user == "us@er")
        #expect(s.password == "p@ss:w/o?rd#")
        #expect(s.database == "my db")
    }

    @Test func unixSocketDirectoryFromHostParameter() throws {
        let s = try ConnectionSettings(url: "postgres://tally@/tally?host=/var/run/postgresql")
        #expect(s.endpoint == .unixSocket(directory: "/var/run/postgresql", port: 5432))
        #expect(s.clientConfiguration().unixSocketPath == "/var/run/postgresql/.s.PGSQL.5432")
    }

    @Test func noHostMeansTheDefaultSocket() throws {
        let s = try ConnectionSettings(url: "postgres://tally@:5433/tally")
        #expect(s.endpoint == .unixSocket(directory: "/var/run/postgresql", port: 5433))
    }

    @Test func ipv6Host() throws {
        let s = try ConnectionSettings(url: "postgres://u:p@[::1]:5999/d")
        #expect(s.endpoint == .tcp(host: "::1", port: 5999))
        #expect(s.url().contains("[::1]:5999"))
    }

    @Test func databaseDefaultsToTheUserName() throws {
        #expect(try ConnectionSettings(url: "postgres://carol:x@h").database == "carol")
        #expect(try ConnectionSettings(url: "postgres://carol:x@h/").database == "carol")
    }

    @Test(arguments: ["disable", "prefer", "require", "verify-ca", "verify-full"])
    func everySSLModeParses(_ mode: String) throws {
        let s = try ConnectionSettings(url: "postgres://u@remote.example/d?sslmode=\(mode)")
        #expect(s.sslMode.rawValue == mode)
    }

    @Test func remoteHostsVerifyTheCertificateByDefault() throws {
        let remote = try ConnectionSettings(url: "postgres://u@remote.example/d")
        #expect(remote.sslMode == .verifyFull)
        #expect(remote.url().contains("sslmode=verify-full"), "the default is written out, so the URL means the same anywhere")
        let prefer = try ConnectionSettings(url: "postgres://u@remote.example/d?sslmode=prefer")
        #expect(try ConnectionSettings(url: prefer.url()).sslMode == .prefer)
        let rooted = try ConnectionSettings(url: "postgres://u@remote.example/d?sslrootcert=/etc/ssl/our%20ca.pem")
        #expect(rooted.sslRootCert == "/etc/ssl/our ca.pem")
        #expect(rooted.libpqEnvironment["PGSSLROOTCERT"] == "/etc/ssl/our ca.pem" && rooted.libpqEnvironment["PGSSLMODE"] == "verify-full")
        #expect(try ConnectionSettings(url: rooted.url()) == rooted)
    }

    @Test func roundTripsThroughItsOwnURL() throws {
        let original = try ConnectionSettings(url: "postgres://us%40er:p%40ss%2F@h.example:7000/d%20b?sslmode=verify-full&application_name=tally")
        let again = try ConnectionSettings(url: original.url())
        #expect(again == original)
    }

    @Test func descriptionHidesThePassword() throws {
        let s = try ConnectionSettings(url: "postgres://alice:TopSecret99@db:5432/x")
        #expect(!s.description.contains("TopSecret99"))
        #expect(s.description.contains("alice:***@db:5432/x"))
        #expect(!"\(s)".contains("TopSecret99"))
    }

    struct Malformed: Sendable, CustomTestStringConvertible {
        var url: String
        var mentions: String
        var testDescription: String { url }
    }

    @Test(arguments: [
        Malformed(url: "", mentions: "must start with postgres://"),
        Malformed(url: "localhost:5432/db", mentions: "must start with postgres://"),
        Malformed(url: "mysql://u:p@h/db", mentions: "scheme"),
        Malformed(url: "postgres://u:p@h:notaport/db", mentions: "port"),
        Malformed(url: "postgres://u:p@h:70000/db", mentions: "port"),
        Malformed(url: "postgres://u:p@h:/db", mentions: "port"),
        Malformed(url: "postgres://u:p@[::1/db", mentions: "IPv6"),
        Malformed(url: "postgres://u:p@h1,h2/db", mentions: "several servers"),
        Malformed(url: "postgres://h/db", mentions: "no user"),
        Malformed(url: "postgres://u:p%zz@h/db", mentions: "the password"),
        Malformed(url: "postgres://u%zz:p@h/db", mentions: "the user name"),
        Malformed(url: "postgres://u:p@h/db?sslmode=sometimes", mentions: "sslmode must be one of"),
        Malformed(url: "postgres://u:p@h/db?schema=public", mentions: "unknown query parameter \"schema\""),
        Malformed(url: "postgres://u:p@h/db/extra", mentions: "database name"),
    ])
    func malformedURLsNameTheWrongPart(_ c: Malformed) {
        #expect {
            try ConnectionSettings(url: c.url)
        } throws: { error in
            guard let error = error as? TallyPostgresError else { return false }
            return error.code == .invalidURL && error.message.contains(c.mentions)
        }
    }

    @Test(arguments: [
        "postgres://u:Hunter2Secret@h:port/db",
        "postgres://u:Hunter2Secret%zz@h/db",
        "postgres://u:Hunter2Secret@h/db?sslmode=bad",
        "postgres://u:Hunter2Secret@h1,h2/db",
        "postgres://u:Hunter2Secret@h/db?password=x&bogus=1",
    ])
    func errorsNeverContainThePassword(_ url: String) {
        do {
            _ = try ConnectionSettings(url: url)
            Issue.record("expected \(url) to be rejected")
        } catch {
            #expect(!error.message.contains("Hunter2Secret"))
            #expect(!error.description.contains("Hunter2Secret"))
        }
    }

    @Test func libpqEnvironmentCarriesThePasswordOutsideTheCommandLine() throws {
        let s = try ConnectionSettings(url: "postgres://u:pw@h:6000/d")
        #expect(s.libpqEnvironment["PGPASSWORD"] == "pw")
        #expect(s.libpqEnvironment["PGHOST"] == "h")
        #expect(s.libpqEnvironment["PGPORT"] == "6000")
    }
}
