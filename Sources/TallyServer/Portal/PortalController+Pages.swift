import Foundation
import HTTPTypes
import Hummingbird
import TallyCredits
import TallyPostgres

/// The portal's pages once signed in. Each reads through the same library calls as the JSON API and only
/// arranges what they return.
extension PortalController {
    /// An account the visitor may see: their own, or a team's they belong to (404 for any other).
    struct Viewed {
        var owner: AccountOwner
        var name: String
        /// `?account=` for links to it ("" for the personal account).
        var param: String
        /// The visitor's role in the team (nil: their own account).
        var role: String?
        /// May add and remove its alerts: the account's user, or a team's owners and admins.
        var manages: Bool { role == nil || role == "owner" || role == "admin" }
    }

    /// The account `team` names among `teamList` (the visitor's teams, with their role in each).
    func viewed(_ team: String?, among teamList: [Team], by visitor: Visitor) throws -> Viewed {
        guard let team, !team.isEmpty else { return Viewed(owner: .user(visitor.user.id), name: "Your account", param: "", role: nil) }
        guard let id = UUID(uuidString: team), let found = teamList.first(where: { $0.id == id }) else {
            throw CreditsError(.notFound, "no such team among yours")
        }
        return Viewed(owner: .team(id), name: "Team \(found.name)", param: id.lowercasedString, role: found.role)
    }

    /// The visitor's teams (one statement a page), and the account `team` names among them.
    func viewed(_ team: String?, by visitor: Visitor, context: TallyRequestContext) async throws -> (Viewed, [Team]) {
        let teamList = try await teams.list(for: visitor.user, context: context.queries)
        return (try viewed(team, among: teamList, by: visitor), teamList)
    }

    /// The accounts to switch between, the current one marked; `path` is the page's, `?account=` its parameter.
    func accounts(_ teamList: [Team], current: Viewed, path: String, byQuery: Bool) -> [[String: Any]] {
        var list: [[String: Any]] = [["name": "Your account", "href": path, "current": current.param.isEmpty]]
        for team in teamList {
            let href = byQuery ? "\(path)?account=\(team.id.lowercasedString)" : "/portal/accounts/\(team.id.lowercasedString)"
            list.append(["name": "Team \(team.name)", "href": href, "current": current.param == team.id.lowercasedString])
        }
        return list
    }

    /// "2026-12-08 14:03", in UTC.
    static func when(_ date: Date) -> String { PortalCharts.minute(date) }

    static func count(_ value: Int64) -> String { value.formatted(.number.locale(Locale(identifier: "en_US"))) }

    // MARK: - Balance

    @Sendable func balancePage(_ request: Request, context: TallyRequestContext) async throws -> Response {
        try await answer(request, context: context) {
            let visitor = try await requireVisitor(request, context: context)
            let (account, teamList) = try await viewed(context.parameters.get("team"), by: visitor, context: context)
            let balance = try await ledger.balance(of: account.owner, context: context.queries)
            let burnDown = try await ledger.burnDown(of: account.owner, balance: balance, context: context.queries)
            let visible = Set(try await keys.list(for: visitor.user, context: context.queries).map(\.id))
            let spend = try await ledger.spendByKey(of: account.owner, visible: visible, context: context.queries)
            let week = Date().addingTimeInterval(7 * 86_400)
            let grants = balance.grants.sorted { ($0.expiresAt ?? .distantFuture) < ($1.expiresAt ?? .distantFuture) }.map { grant -> [String: Any] in
                [
                    "remaining": Self.count(grant.remaining), "priority": grant.priority,
                    "expires": grant.expiresAt.map { Self.when($0) } ?? "never", "soon": grant.expiresAt.map { $0 <= week } ?? false,
                ]
            }
            let days = burnDown.days.map { day -> [String: Any] in
                ["day": PortalCharts.day(day.day), "balance": day.balance, "granted": day.granted, "spent": day.spent]
            }
            var values: [String: Any] = [
                "accountName": account.name,
                "accounts": accounts(teamList, current: account, path: "/portal", byQuery: false),
                "balance": Self.count(balance.balance), "held": Self.count(balance.held), "available": Self.count(balance.available),
                "grants": grants, "hasGrants": !grants.isEmpty, "days": days,
                "spendPerDay": String(format: "%.1f", burnDown.spendPerDay), "rateText": burnDown.rateDays <= 1 ? "today's" : "the last \(burnDown.rateDays) days' average",
                "projectionText": PortalCharts.projectionText(burnDown),
            ]
            if let chart = PortalCharts.burnDown(burnDown) { values["chart"] = chart }
            if let keyChart = PortalCharts.keys(spend) { values["keyChart"] = keyChart }
            return page("balance", title: account.name, values, visitor: visitor, nav: "balance")
        }
    }

    // MARK: - Keys

    @Sendable func keysPage(_ request: Request, context: TallyRequestContext) async throws -> Response {
        try await answer(request, context: context) {
            let visitor = try await requireVisitor(request, context: context)
            var values = try await keyValues(visitor, context: context)
            var cookies: [Cookie] = []
            // A key just created comes once, in a cookie the POST set; this answer removes it, so a reload shows
            // nothing. Tally never stores it.
            if let cookie = request.cookies[PortalSecurity.newKeyCookie]?.value {
                let parts = cookie.split(separator: ".", maxSplits: 1).map(String.init)
                if parts.count == 2, let name = Data(base64Encoded: parts[0]).flatMap({ String(data: $0, encoding: .utf8) }) {
                    values["created"] = ["name": name, "key": parts[1]]
                }
                cookies.append(PortalSecurity.expired(PortalSecurity.newKeyCookie, secure: secure, path: "/portal/keys"))
            } else if request.uri.queryParameters.get("created") != nil {
                values["lost"] = true
            }
            return page("keys", title: "API keys", values, visitor: visitor, nav: "keys", cookies: cookies)
        }
    }

    func keyValues(_ visitor: Visitor, context: TallyRequestContext) async throws -> [String: Any] {
        let teamList = try await teams.list(for: visitor.user, context: context.queries)
        let names = Dictionary(uniqueKeysWithValues: teamList.map { ($0.id, "Team \($0.name)") })
        let list = try await keys.list(for: visitor.user, context: context.queries).map { key -> [String: Any] in
            var row: [String: Any] = [
                "id": key.id.lowercasedString, "name": key.name, "prefix": key.prefix, "account": key.teamID.flatMap { names[$0] } ?? "Your account",
                "limit": key.creditLimit.map { Self.count($0) } ?? "none", "used": Self.count(key.used), "created": Self.when(key.createdAt),
            ]
            // Absent, not nil: a template section treats any value it is given as present.
            if let revoked = key.revokedAt { row["revoked"] = Self.when(revoked) }
            return row
        }
        var spending: [[String: Any]] = [["teamID": "", "name": "Your account"]]
        for team in teamList where team.role == "owner" || team.role == "admin" {
            spending.append(["teamID": team.id.lowercasedString, "name": "Team \(team.name)"])
        }
        return ["keys": list, "hasKeys": !list.isEmpty, "spendingAccounts": spending]
    }

    @Sendable func createKey(_ request: Request, context: TallyRequestContext) async throws -> Response {
        var request = request
        return try await answer(request, context: context) {
            let (visitor, fields) = try await poster(&request, context: context)
            let team = try fields.text("team_id").map { text in
                guard let id = UUID(uuidString: text) else { throw CreditsError(.invalidInput, "choose an account the key spends from") }
                return id
            }
            let limit = try fields.text("credit_limit").map { text in
                guard let value = Int64(text), value >= 0 else { throw CreditsError(.invalidInput, "the limit must be a whole number of credits, 0 or more") }
                return value
            }
            do {
                let created = try await keys.create(name: fields["name"] ?? "", teamID: team, creditLimit: limit, by: visitor.user, context: context.queries)
                let carried = Data(created.apiKey.name.utf8).base64EncodedString() + "." + created.key
                return redirect("/portal/keys?created=\(created.apiKey.id.lowercasedString)", cookies: [
                    PortalSecurity.cookie(PortalSecurity.newKeyCookie, carried, secure: secure, maxAge: 120, path: "/portal/keys", sameSite: .strict),
                ])
            } catch let error as CreditsError where error.code == .invalidInput {
                var values = try await keyValues(visitor, context: context)
                values["problem"] = error.message
                return page("keys", title: "API keys", values, visitor: visitor, nav: "keys", status: .badRequest)
            }
        }
    }

    func ownKey(_ request: Request, _ visitor: Visitor, context: TallyRequestContext) async throws -> APIKey {
        guard let id = context.parameters.get("key").flatMap(UUID.init(uuidString:)),
              let key = try await keys.list(for: visitor.user, context: context.queries).first(where: { $0.id == id })
        else { throw CreditsError(.notFound, "no such key among yours") }
        return key
    }

    @Sendable func revokeKeyPage(_ request: Request, context: TallyRequestContext) async throws -> Response {
        try await answer(request, context: context) {
            let visitor = try await requireVisitor(request, context: context)
            let key = try await ownKey(request, visitor, context: context)
            return page("confirm", title: "Revoke \(key.name)", [
                "heading": "Revoke the key \(key.name)?", "question": "The key \(key.prefix)… stops working at once, for every request. This cannot be undone.",
                "confirm": "Revoke \(key.name)", "action": "/portal/keys/\(key.id.lowercasedString)/revoke", "back": "/portal/keys",
            ], visitor: visitor, nav: "keys")
        }
    }

    @Sendable func revokeKey(_ request: Request, context: TallyRequestContext) async throws -> Response {
        var request = request
        return try await answer(request, context: context) {
            let (visitor, _) = try await poster(&request, context: context)
            let key = try await ownKey(request, visitor, context: context)
            try await keys.revoke(key.id, by: visitor.user, context: context.queries)
            return redirect("/portal/keys")
        }
    }

    // MARK: - Teams

    @Sendable func teamsPage(_ request: Request, context: TallyRequestContext) async throws -> Response {
        try await answer(request, context: context) {
            let visitor = try await requireVisitor(request, context: context)
            let list = try await teams.list(for: visitor.user, context: context.queries)
            let invited = try await teams.invitations(to: visitor.user, context: context.queries)
            return page("teams", title: "Teams", [
                "teams": list.map { ["id": $0.id.lowercasedString, "name": $0.name, "role": $0.role] }, "hasTeams": !list.isEmpty,
                "invitations": invited.map { ["id": $0.id.lowercasedString, "teamName": $0.teamName, "role": $0.role, "invitedBy": $0.invitedBy] },
                "hasInvitations": !invited.isEmpty,
            ], visitor: visitor, nav: "teams")
        }
    }

    @Sendable func createTeam(_ request: Request, context: TallyRequestContext) async throws -> Response {
        var request = request
        return try await answer(request, context: context) {
            let (visitor, fields) = try await poster(&request, context: context)
            let team = try await teams.create(name: fields["name"] ?? "", by: visitor.user, context: context.queries)
            return redirect("/portal/teams/\(team.id.lowercasedString)")
        }
    }

    func teamID(_ context: TallyRequestContext) throws -> UUID {
        guard let id = context.parameters.get("team").flatMap(UUID.init(uuidString:)) else { throw CreditsError(.notFound, "no such team among yours") }
        return id
    }

    @Sendable func teamPage(_ request: Request, context: TallyRequestContext) async throws -> Response {
        try await answer(request, context: context) {
            let visitor = try await requireVisitor(request, context: context)
            let id = try teamID(context)
            let members = try await teams.members(of: id, for: visitor.user, context: context.queries)
            let team = try await teams.list(for: visitor.user, context: context.queries).first { $0.id == id }
            let role = team?.role ?? "member"
            let manages = role == "owner" || role == "admin"
            let pending = manages ? try await teams.invitations(of: id, for: visitor.user, context: context.queries) : []
            return page("team", title: "Team \(team?.name ?? "")", [
                "teamName": team?.name ?? "", "teamID": id.lowercasedString, "role": role, "manages": manages, "owner": role == "owner",
                "members": members.map { member -> [String: Any] in
                    ["email": member.email, "name": member.name ?? "", "role": member.role, "joined": Self.when(member.joinedAt), "userID": member.userID.lowercasedString]
                },
                "pending": pending.map { ["email": $0.email, "role": $0.role, "expires": Self.when($0.expiresAt)] }, "hasPending": !pending.isEmpty,
            ], visitor: visitor, nav: "teams")
        }
    }

    @Sendable func invite(_ request: Request, context: TallyRequestContext) async throws -> Response {
        var request = request
        return try await answer(request, context: context) {
            let (visitor, fields) = try await poster(&request, context: context)
            let id = try teamID(context)
            _ = try await teams.invite(email: fields["email"] ?? "", role: fields.text("role") ?? "member", to: id, by: visitor.user, context: context.queries)
            return redirect("/portal/teams/\(id.lowercasedString)")
        }
    }

    @Sendable func removeMemberPage(_ request: Request, context: TallyRequestContext) async throws -> Response {
        try await answer(request, context: context) {
            let visitor = try await requireVisitor(request, context: context)
            let id = try teamID(context)
            let members = try await teams.members(of: id, for: visitor.user, context: context.queries)
            guard let member = members.first(where: { $0.userID.lowercasedString == context.parameters.get("user")?.lowercased() }) else {
                throw CreditsError(.notFound, "no such member of this team")
            }
            return page("confirm", title: "Remove \(member.email)", [
                "heading": "Remove \(member.email) from the team?",
                "question": "Their keys on this team are revoked at once, and their pending invitations go.",
                "confirm": "Remove \(member.email)", "action": "/portal/teams/\(id.lowercasedString)/members/\(member.userID.lowercasedString)/remove",
                "back": "/portal/teams/\(id.lowercasedString)",
            ], visitor: visitor, nav: "teams")
        }
    }

    @Sendable func removeMember(_ request: Request, context: TallyRequestContext) async throws -> Response {
        var request = request
        return try await answer(request, context: context) {
            let (visitor, _) = try await poster(&request, context: context)
            let id = try teamID(context)
            guard let member = context.parameters.get("user").flatMap(UUID.init(uuidString:)) else { throw CreditsError(.notFound, "no such member of this team") }
            try await teams.removeMember(member, from: id, by: visitor.user, context: context.queries)
            return redirect(member == visitor.user.id ? "/portal/teams" : "/portal/teams/\(id.lowercasedString)")
        }
    }

    @Sendable func acceptInvitation(_ request: Request, context: TallyRequestContext) async throws -> Response {
        var request = request
        return try await answer(request, context: context) {
            let (visitor, _) = try await poster(&request, context: context)
            guard let id = context.parameters.get("invitation").flatMap(UUID.init(uuidString:)) else { throw CreditsError(.notFound, "no such invitation") }
            let team = try await teams.accept(id, by: visitor.user, context: context.queries)
            return redirect("/portal/teams/\(team.id.lowercasedString)")
        }
    }

    // MARK: - Ledger

    struct LedgerQuery {
        var key: UUID?
        var kind: String?
        var cursor: String?
    }

    func ledgerQuery(_ request: Request) throws -> LedgerQuery {
        let query = request.uri.queryParameters
        let key = try query.get("key").flatMap { $0.isEmpty ? nil : $0 }.map { text in
            guard let id = UUID(uuidString: text) else { throw CreditsError(.invalidInput, "key must be one of the account's keys") }
            return id
        }
        return LedgerQuery(key: key, kind: query.get("kind").flatMap { $0.isEmpty ? nil : $0 }, cursor: query.get("cursor").flatMap { $0.isEmpty ? nil : $0 })
    }

    @Sendable func ledgerPage(_ request: Request, context: TallyRequestContext) async throws -> Response {
        try await answer(request, context: context) {
            let visitor = try await requireVisitor(request, context: context)
            let (account, teamList) = try await viewed(request.uri.queryParameters.get("account"), by: visitor, context: context)
            let filter = try ledgerQuery(request)
            let page = try await ledger.transactions(of: account.owner, limit: 50, cursor: filter.cursor, key: filter.key, kind: filter.kind, context: context.queries)
            // The account's keys the visitor may list: of the keys they may list, those that spend from it.
            let team: UUID? = if case .team(let id) = account.owner { id } else { nil }
            let accountKeys = try await keys.list(for: visitor.user, context: context.queries).filter { $0.teamID == team }
            let names = Dictionary(uniqueKeysWithValues: accountKeys.map { ($0.id, "\($0.name) (\($0.prefix)…)") })
            var base = "account=\(account.param)"
            if let key = filter.key { base += "&key=\(key.lowercasedString)" }
            if let kind = filter.kind { base += "&kind=\(kind)" }
            var values: [String: Any] = [
                "accountName": account.name, "accountParam": account.param,
                "accounts": accounts(teamList, current: account, path: "/portal/ledger", byQuery: true),
                "keyOptions": accountKeys.map { ["id": $0.id.lowercasedString, "name": names[$0.id] ?? $0.name, "selected": $0.id == filter.key] },
                "kindOptions": LedgerEntry.kinds.map { ["kind": $0, "selected": $0 == filter.kind] },
                "filtered": filter.key != nil || filter.kind != nil,
                "entries": page.transactions.map { entry -> [String: Any] in
                    [
                        "at": Self.when(entry.createdAt), "kind": entry.kind, "amount": Self.count(entry.amount), "balanceAfter": Self.count(entry.balanceAfter),
                        "key": entry.apiKeyID.map { names[$0] ?? "another key" } ?? "", "description": entry.description ?? "",
                    ]
                },
                "hasEntries": !page.transactions.isEmpty,
                "csvHref": "/portal/ledger.csv?\(base)",
            ]
            if let next = page.nextCursor { values["nextHref"] = "/portal/ledger?\(base)&cursor=\(next)" }
            return self.page("ledger", title: "Ledger", values, visitor: visitor, nav: "ledger")
        }
    }

    /// The filtered ledger as CSV (RFC 4180), newest first, at most the 10,000 newest entries.
    @Sendable func ledgerCSV(_ request: Request, context: TallyRequestContext) async throws -> Response {
        try await answer(request, context: context) {
            let visitor = try await requireVisitor(request, context: context)
            let (account, _) = try await viewed(request.uri.queryParameters.get("account"), by: visitor, context: context)
            let filter = try ledgerQuery(request)
            let iso = ISO8601DateFormatter()
            var csv = "id,created_at,kind,amount,balance_after,api_key_id,grant_id,hold_id,description\r\n"
            var cursor = filter.cursor
            var rows = 0
            repeat {
                let page = try await ledger.transactions(
                    of: account.owner, limit: Ledger.maximumPageSize, cursor: cursor, key: filter.key, kind: filter.kind, context: context.queries)
                for entry in page.transactions {
                    let fields = [
                        String(entry.id), iso.string(from: entry.createdAt), entry.kind, String(entry.amount), String(entry.balanceAfter),
                        entry.apiKeyID?.lowercasedString ?? "", entry.grantID?.lowercasedString ?? "", entry.holdID?.lowercasedString ?? "", entry.description ?? "",
                    ]
                    csv += fields.map(Self.csvField).joined(separator: ",") + "\r\n"
                }
                rows += page.transactions.count
                cursor = page.nextCursor
            } while cursor != nil && rows < 10_000
            let name = account.param.isEmpty ? "ledger.csv" : "ledger-\(account.param).csv"
            return Response(status: .ok, headers: [.contentType: "text/csv; charset=utf-8", .contentDisposition: "attachment; filename=\"\(name)\""],
                            body: .init(byteBuffer: ByteBuffer(string: csv)))
        }
    }

    /// A CSV field, quoted when it must be; a leading =, +, - or @ is prefixed with ' so a spreadsheet does not run
    /// it as a formula.
    static func csvField(_ text: String) -> String {
        var text = text
        if let first = text.first, "=+-@".contains(first), Int64(text) == nil { text = "'" + text }
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    // MARK: - Alerts

    @Sendable func alertsPage(_ request: Request, context: TallyRequestContext) async throws -> Response {
        try await answer(request, context: context) {
            let visitor = try await requireVisitor(request, context: context)
            let (account, teamList) = try await viewed(request.uri.queryParameters.get("account"), by: visitor, context: context)
            return try await alertsView(visitor, account, teamList, context: context)
        }
    }

    func alertsView(_ visitor: Visitor, _ account: Viewed, _ teamList: [Team], problem: String? = nil, context: TallyRequestContext) async throws -> Response {
        let list = try await alerts.list(on: account.owner, context: context.queries)
        var values: [String: Any] = [
            "accountName": account.name, "accountParam": account.param, "manages": account.manages,
            "accounts": accounts(teamList, current: account, path: "/portal/alerts", byQuery: true),
            "alerts": list.map { alert -> [String: Any] in
                [
                    "id": alert.id.lowercasedString, "threshold": alert.threshold.map { Self.count($0) } ?? "\(alert.percent ?? 0)% of the newest grant",
                    "state": alert.armed ? "armed" : "fired, waiting for credits to come back", "created": Self.when(alert.createdAt),
                ]
            },
            "hasAlerts": !list.isEmpty,
        ]
        if let problem { values["problem"] = problem }
        return page("alerts", title: "Alerts", values, visitor: visitor, nav: "alerts", status: problem == nil ? .ok : .badRequest)
    }

    func managed(_ request: Request, _ visitor: Visitor, context: TallyRequestContext) async throws -> (Viewed, [Team]) {
        let (account, teamList) = try await viewed(request.uri.queryParameters.get("account"), by: visitor, context: context)
        guard account.manages else { throw CreditsError(.forbidden, "only the team's owners and admins change its alerts") }
        return (account, teamList)
    }

    @Sendable func addAlert(_ request: Request, context: TallyRequestContext) async throws -> Response {
        var request = request
        return try await answer(request, context: context) {
            let (visitor, fields) = try await poster(&request, context: context)
            let (account, teamList) = try await managed(request, visitor, context: context)
            guard let threshold = fields.text("threshold").flatMap(Int64.init), threshold >= 0 else {
                return try await alertsView(visitor, account, teamList, problem: "The threshold must be a whole number of credits, 0 or more.", context: context)
            }
            _ = try await alerts.create(on: account.owner, threshold: threshold, percent: nil, by: actor(visitor, context), context: context.queries)
            return redirect("/portal/alerts?account=\(account.param)")
        }
    }

    @Sendable func deleteAlert(_ request: Request, context: TallyRequestContext) async throws -> Response {
        var request = request
        return try await answer(request, context: context) {
            let (visitor, _) = try await poster(&request, context: context)
            let (account, _) = try await managed(request, visitor, context: context)
            guard let id = context.parameters.get("alert").flatMap(UUID.init(uuidString:)) else { throw CreditsError(.notFound, "no such alert") }
            try await alerts.delete(id, on: account.owner, by: actor(visitor, context), context: context.queries)
            return redirect("/portal/alerts?account=\(account.param)")
        }
    }

    // MARK: - Webhooks (admins)

    @Sendable func webhooksPage(_ request: Request, context: TallyRequestContext) async throws -> Response {
        try await answer(request, context: context) {
            let visitor = try await requireVisitor(request, context: context)
            guard visitor.user.isAdmin else { throw CreditsError(.forbidden, "only admins see the webhooks") }
            var endpoints: [[String: Any]] = []
            for endpoint in try await webhooks.list(context: context.queries) {
                let deliveries = try await webhooks.deliveries(of: endpoint.id, limit: 10, context: context.queries).deliveries
                endpoints.append([
                    "id": endpoint.id.lowercasedString, "url": endpoint.url,
                    "scope": endpoint.accountID == nil ? "every account" : "one account",
                    "types": endpoint.eventTypes?.joined(separator: ", ") ?? "every event type",
                    "state": endpoint.disabledAt == nil ? "enabled" : "disabled: \(endpoint.disabledReason ?? "")",
                    "deliveries": deliveries.map { delivery -> [String: Any] in
                        [
                            "id": delivery.id, "endpointID": endpoint.id.lowercasedString, "eventType": delivery.eventType, "sequence": delivery.sequence,
                            "status": delivery.status, "attempts": delivery.attempts.count, "lastError": delivery.lastError ?? "",
                        ]
                    },
                ])
            }
            return page("webhooks", title: "Webhooks", ["endpoints": endpoints, "hasEndpoints": !endpoints.isEmpty], visitor: visitor, nav: "webhooks")
        }
    }

    @Sendable func redeliver(_ request: Request, context: TallyRequestContext) async throws -> Response {
        var request = request
        return try await answer(request, context: context) {
            let (visitor, _) = try await poster(&request, context: context)
            guard visitor.user.isAdmin else { throw CreditsError(.forbidden, "only admins redeliver webhooks") }
            guard let endpoint = context.parameters.get("webhook").flatMap(UUID.init(uuidString:)),
                  let delivery = context.parameters.get("delivery").flatMap(Int64.init)
            else { throw CreditsError(.notFound, "no such delivery") }
            try await webhooks.redeliver(delivery, of: endpoint, by: actor(visitor, context), context: context.queries)
            return redirect("/portal/webhooks")
        }
    }
}
