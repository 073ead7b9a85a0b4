import Foundation
import HummingbirdTesting
import TallyCredits
import TallyPostgres
import Testing
@testable import TallyServer

@Suite struct ConcurrencyTests {
    @Test func aKeysCreditLimitHoldsUnderFiftyConcurrentClients() async throws {
        try await withTallyServer { client, db in
            let (_, _, key) = try await fundedUser(client, db, credits: 5000, key: ["name": "capped", "credit_limit": 300])
            let port = try #require(client.port)

            let results = try await withThrowingTaskGroup(of: [(Int, Int, String?)].self) { group in
                for _ in 0..<50 {
                    group.addTask {
                        var out: [(Int, Int, String?)] = []
                        for _ in 0..<4 {
                            let amount = Int.random(in: 1...20)
                            let answer = try await send(port: port, "/v1/credits/consume", token: key, body: ["amount": amount])
                            out.append((answer.status, amount, answer.body["type"] as? String))
                        }
                        return out
                    }
                }
                var all: [(Int, Int, String?)] = []
                for try await part in group { all += part }
                return all
            }
            #expect(results.allSatisfy { $0.0 == 200 || ($0.0 == 402 && $0.2 == "/problems/key-limit-exceeded") }, "\(Set(results.map(\.0)))")
            let spent = results.filter { $0.0 == 200 }.reduce(0) { $0 + $1.1 }
            #expect(spent <= 300)
            #expect(spent > 280, "refusals only once the allowance is nearly gone (spent \(spent))")
            #expect(try await scalar(db, "SELECT used FROM api_key_credits") == Int64(spent))
            #expect(try await scalar(db, "SELECT -sum(amount)::bigint FROM credit_transactions WHERE kind = 'consume'") == Int64(spent))
            #expect(try await scalar(db, "SELECT balance FROM user_credits") == Int64(5000 - spent))
            let report = try await audit(db)
            #expect(report.ok, "\(report.failures)")
        }
    }

    @Test func holdsAndSpendsMixedKeepAvailableExact() async throws {
        try await withTallyServer { client, db in
            let (_, _, key) = try await fundedUser(client, db, credits: 1500)
            let port = try #require(client.port)

            /// What each worker saw succeed: spent (consumed + captured) and still held.
            let outcomes = try await withThrowingTaskGroup(of: (spent: Int, held: Int, statuses: [Int]).self) { group in
                for worker in 0..<40 {
                    group.addTask {
                        var spent = 0
                        var held = 0
                        var statuses: [Int] = []
                        for step in 0..<3 {
                            switch (worker + step) % 3 {
                            case 0:
                                let amount = Int.random(in: 1...30)
                                let answer = try await send(port: port, "/v1/credits/consume", token: key, body: ["amount": amount])
                                statuses.append(answer.status)
                                if answer.status == 200 { spent += amount }
                            default:
                                let amount = Int.random(in: 5...40)
                                let placed = try await send(port: port, "/v1/credits/holds", token: key, body: ["amount": amount])
                                statuses.append(placed.status)
                                guard placed.status == 201, let hold = placed.body["hold_id"] as? String else { continue }
                                switch Int.random(in: 0..<3) {
                                case 0:
                                    let take = Int.random(in: 1...amount)
                                    let captured = try await send(port: port, "/v1/credits/holds/\(hold)/capture", token: key, body: ["amount": take])
                                    statuses.append(captured.status)
                                    if captured.status == 200 { spent += take }
                                case 1:
                                    statuses.append(try await send(port: port, "/v1/credits/holds/\(hold)/release", token: key).status)
                                default:
                                    held += amount
                                }
                            }
                        }
                        return (spent, held, statuses)
                    }
                }
                var all: [(spent: Int, held: Int, statuses: [Int])] = []
                for try await outcome in group { all.append(outcome) }
                return all
            }
            let statuses = outcomes.flatMap(\.statuses)
            #expect(statuses.allSatisfy { [200, 201, 402].contains($0) }, "\(Set(statuses))")
            let spent = outcomes.reduce(0) { $0 + $1.spent }
            let held = outcomes.reduce(0) { $0 + $1.held }
            let balance = object(try await call(client, "/v1/credits/balance", .get, key).body)
            #expect(balance["balance"] as? Int == 1500 - spent)
            #expect(balance["held"] as? Int == held)
            #expect(balance["available"] as? Int == 1500 - spent - held)
            #expect(try await scalar(db, "SELECT COALESCE(sum(amount), 0)::bigint FROM credit_holds WHERE status = 'open'") == Int64(held))
            let report = try await audit(db)
            #expect(report.ok, "\(report.failures)")
        }
    }
}
