import Foundation
import Hummingbird
import TallyCredits

/// The request and response bodies of `CreditsController`; field names are the API's (snake_case).
extension CreditsController {
    struct CreateKeyBody: JSONBody {
        enum CodingKeys: String, CodingKey, CaseIterable { case name, team_id, credit_limit }
        var name: String
        var team_id: UUID?
        var credit_limit: Int64?
    }

    struct KeyList: ResponseEncodable { var api_keys: [APIKey] }

    struct GrantBody: JSONBody {
        enum CodingKeys: String, CodingKey, CaseIterable { case user_id, team_id, amount, expires_at, priority, description }
        var user_id: UUID?
        var team_id: UUID?
        var amount: Int64
        var expires_at: String?
        var priority: Int?
        var description: String
    }

    struct ConsumeBody: JSONBody {
        enum CodingKeys: String, CodingKey, CaseIterable { case amount, description, metadata }
        var amount: Int64
        var description: String?
        var metadata: JSONValue?
    }

    struct HoldBody: JSONBody {
        enum CodingKeys: String, CodingKey, CaseIterable { case amount, ttl_seconds, description }
        var amount: Int64
        var ttl_seconds: Int?
        var description: String?
    }

    struct CaptureBody: JSONBody {
        enum CodingKeys: String, CodingKey, CaseIterable { case amount }
        var amount: Int64?
    }
}
