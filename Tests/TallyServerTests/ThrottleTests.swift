import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import TallyCredits
import TallyPostgres
import TallyTestSupport
import Testing
@testable import TallyServer

/// Password guessing meets 429 early, without locking anyone else out, and a restart does not reset it.
/// The server trusts 127.0.0.1 as a proxy here, so `X-Forwarded-For` gives each caller an address of its own.
@Suite struct ThrottleTests {
    static func settings(_ db: ConnectionSettings) -> ServerSettings {
        var settings = ServerSettings(host: "127.0.0.1", port: 0, database: db, logLevel: .critical, bcryptCost: 4)
        settings.trustedProxies = [AddressRange("127.0.0.1/32")!]
        return settings
    }

    static func login(_ client: some TestClientProtocol, _ email: String, _ password: String, from address: String) async throws -> TestResponse {
        try await client.execute(
            uri: "/v1/auth/login", method: .post, headers: [HTTPField.Name("X-Forwarded-For")!: address],
            body: json(["email": email, "password": password]))
    }

    @Test func guessingMeets429EarlyWithoutLockingOthersOutAndSurvivesARestart() async throws {
        try await TestDatabase.withFreshDatabase(from: .tally) { db in
            try await buildApplication(Self.settings(db)).test(.live) { raw in
                let client = ContractCheckingClient(client: raw)
                _ = try await signup(client, "victim@example.com")
                _ = try await signup(client, "other@example.com")

                var statuses: [Int] = []
                var retryAfter: [Int] = []
                for _ in 0..<30 {
                    let answer = try await Self.login(client, "victim@example.com", "not the password", from: "203.0.113.7")
                    statuses.append(Int(answer.status.code))
                    if answer.status == .tooManyRequests {
                        #expect(object(answer.body)["type"] as? String == "/problems/too-many-attempts")
                        retryAfter.append(Int(answer.headers[.retryAfter] ?? "") ?? 0)
                    }
                }
                let wrong = statuses.filter { $0 == 401 }.count
                #expect(Set(statuses).isSubset(of: [401, 429]), "\(statuses)")
                #expect(statuses.prefix(5).allSatisfy { $0 == 401 }, "five wrong passwords are answered as such: \(statuses)")
                #expect(statuses.firstIndex(of: 429).map { $0 <= 6 } == true, "the seventh try at the latest waits: \(statuses)")
                // Each failure past the fifth doubles the wait (1 s, 2 s, 4 s …): the 30 tries run through few.
                #expect(wrong >= 6 && wrong <= 9, "\(wrong) passwords checked of 30: \(statuses)")
                #expect(!retryAfter.isEmpty && retryAfter.allSatisfy { $0 >= 1 && $0 <= 16 }, "Retry-After \(retryAfter)")

                // Meanwhile, another account from another address: in at once.
                let started = ContinuousClock.now
                let other = try await Self.login(client, "other@example.com", "password123", from: "198.51.100.9")
                #expect(other.status == .ok)
                #expect(ContinuousClock.now - started < .seconds(1))
                // And the victim, from their own address, is not locked out.
                #expect(try await Self.login(client, "victim@example.com", "password123", from: "192.0.2.55").status == .ok)
                // An address the peer is not trusted to vouch for is ignored (a header from the client itself
                // when it is not a proxy): covered by the untrusted-header test below.
            }

            // A restart (a new server on the same database) keeps the count: within two tries, a 429 again,
            // where a reset budget would answer five more 401s.
            try await buildApplication(Self.settings(db)).test(.live) { raw in
                let client = ContractCheckingClient(client: raw)
                var after: [Int] = []
                for _ in 0..<2 {
                    after.append(Int(try await Self.login(client, "victim@example.com", "not the password", from: "203.0.113.7").status.code))
                }
                #expect(after.contains(429), "after a restart: \(after)")
            }
        }
    }

    /// `X-Forwarded-For` counts only from a trusted proxy: a client that sends it itself is counted by its
    /// socket's address, so it cannot spread its guesses over made-up addresses.
    @Test func aForwardedForHeaderFromAnUntrustedPeerIsIgnored() async throws {
        try await withTallyServer { client, _ in
            _ = try await signup(client, "victim@example.com")
            var statuses: [Int] = []
            for n in 0..<8 {
                let answer = try await Self.login(client, "victim@example.com", "not the password", from: "203.0.113.\(n)")
                statuses.append(Int(answer.status.code))
            }
            #expect(statuses.contains(429), "eight guesses from one socket address behind eight made-up ones: \(statuses)")
        }
    }

    @Test func addressRangesMatchWhatTheyName() {
        let v4 = AddressRange("10.1.0.0/16")!
        #expect(v4.contains("10.1.200.3") && !v4.contains("10.2.0.1") && !v4.contains("::1"))
        let one = AddressRange("127.0.0.1")!
        #expect(one.contains("127.0.0.1") && !one.contains("127.0.0.2"))
        let v6 = AddressRange("2001:db8::/32")!
        #expect(v6.contains("2001:db8:1::5") && !v6.contains("2001:db9::1"))
        #expect(AddressRange("10.0.0.0/33") == nil && AddressRange("not an address") == nil && AddressRange("10.0.0.0/x") == nil)
        #expect(AddressRange("0.0.0.0/0")!.contains("8.8.8.8"))
    }
}
