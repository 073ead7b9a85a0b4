import Foundation
import TallyCredits

/// The geometry of the portal's two charts, from `BurnDown` and `KeySpend`; the templates draw them as SVG. Every
/// mark carries its figure in a `<title>` (screen readers, hovering), and the page has the same data as a table.
enum PortalCharts {
    static let width = 720.0, height = 280.0
    static let left = 64.0, right = 700.0, top = 16.0, bottom = 244.0
    /// How far ahead the dashed projection is drawn.
    static let daysAhead = 30

    struct Tick: Sendable { var left = PortalCharts.left, right = PortalCharts.right, y = 0.0, x = 0.0, labelX = PortalCharts.left - 6, labelY = 0.0, label = "" }
    struct Mark: Sendable { var x: Double, y: Double, title: String }
    struct Label: Sendable { var x: Double, y: Double, label: String }

    struct BurnDownChart: Sendable {
        var width = PortalCharts.width, height = PortalCharts.height, top = PortalCharts.top, bottom = PortalCharts.bottom
        var days: Int
        var summary: String
        var yTicks: [Tick]
        var xTicks: [Tick]
        var todayX: Double
        var balancePoints: String
        var projectionPoints: String?
        var points: [Mark]
        var markers: [Mark]
        var zero: Label?
    }

    struct Bar: Sendable { var series: Int, x: Double, y: Double, width: Double, height: Double, title: String }
    struct Legend: Sendable { var series: Int, name: String, total: Int64 }
    struct KeyChart: Sendable {
        var width = PortalCharts.width, height = PortalCharts.height
        var days: Int
        var yTicks: [Tick]
        var xTicks: [Tick]
        var bars: [Bar]
        var legend: [Legend]
    }

    /// "Dec 8", in UTC (the ledger's days).
    static func day(_ date: Date) -> String { shortDay.format(date) }
    /// "Tuesday, December 8, 2026", in UTC.
    static func long(_ date: Date) -> String { longDay.format(date) }
    /// "2026-12-08 14:03", in UTC.
    static func minute(_ date: Date) -> String { minuteStyle.format(date) }

    // Made once: a page formats a date per point, bar and row.
    static let utcZone = TimeZone(identifier: "UTC")!
    static let utcCalendar: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = utcZone
        return calendar
    }()
    static let posix = Locale(identifier: "en_US_POSIX")
    static let shortDay = Date.VerbatimFormatStyle(
        format: "\(month: .abbreviated) \(day: .defaultDigits)", locale: posix, timeZone: utcZone, calendar: utcCalendar)
    static let longDay = Date.VerbatimFormatStyle(
        format: "\(weekday: .wide), \(month: .wide) \(day: .defaultDigits), \(year: .defaultDigits)", locale: posix, timeZone: utcZone, calendar: utcCalendar)
    static let minuteStyle = Date.VerbatimFormatStyle(
        format: "\(year: .defaultDigits)-\(month: .twoDigits)-\(day: .twoDigits) \(hour: .twoDigits(clock: .twentyFourHour, hourCycle: .zeroBased)):\(minute: .twoDigits)",
        locale: posix, timeZone: utcZone, calendar: utcCalendar)
    static func number(_ value: Double) -> String { String(format: "%.1f", value) }

    /// A scale's top: the highest value, rounded up to a round number (at least 10).
    static func ceiling(_ value: Int64) -> Int64 {
        let value = max(value, 10)
        let magnitude = Int64(pow(10, floor(log10(Double(value)))))
        let steps: [Int64] = [1, 2, 5, 10]
        return (steps.map { $0 * magnitude }.first { $0 >= value }) ?? value
    }

    /// Four or five steps up to `top` (a `ceiling`), each a whole number.
    static func yTicks(max top: Int64) -> [Tick] {
        let steps: Int64 = top % 4 == 0 ? 4 : 5
        return (0...steps).map { index in
            let value = top * index / steps
            let y = bottom - (bottom - PortalCharts.top) * Double(index) / Double(steps)
            return Tick(y: y, labelY: y + 4, label: value.formatted(.number.locale(Locale(identifier: "en_US"))))
        }
    }

    /// The balance day by day, and the projection from today on (the next 30 days of it, or up to the day it
    /// reaches zero), on one time axis.
    static func burnDown(_ burnDown: BurnDown) -> BurnDownChart? {
        guard !burnDown.days.isEmpty else { return nil }
        let past = burnDown.days.count
        let ahead = min(daysAhead, max(burnDown.projection.path.count - 1, 0))
        let span = Double(max(past - 1 + ahead, 1))
        let path = burnDown.projection.path.prefix(ahead + 1)
        let topValue = ceiling(max(burnDown.days.map(\.balance).max() ?? 0, path.max() ?? 0))
        func x(_ index: Int) -> Double { left + (right - left) * Double(index) / span }
        func y(_ value: Int64) -> Double { bottom - (bottom - top) * Double(max(value, 0)) / Double(topValue) }
        var points = burnDown.days.enumerated().map { index, day in
            Mark(x: x(index), y: y(day.balance), title: "\(Self.day(day.day)): balance \(day.balance), granted \(day.granted), spent \(day.spent)")
        }
        let markers = burnDown.days.enumerated().filter { $0.element.granted > 0 }.map { index, day in
            Mark(x: x(index), y: y(day.balance), title: "\(Self.day(day.day)): \(day.granted) credits granted")
        }
        let todayIndex = past - 1
        var projection: String?
        if ahead > 0 {
            projection = path.enumerated().map { "\(number(x(todayIndex + $0.offset))),\(number(y($0.element)))" }.joined(separator: " ")
        }
        var zero: Label?
        if let runsOut = burnDown.projection.runsOutAt, path.last == 0, ahead > 0 {
            zero = Label(x: x(todayIndex + ahead), y: y(0) - 8, label: "0 on \(day(runsOut))")
            points.append(Mark(x: x(todayIndex + ahead), y: y(0), title: "Projected: no credits left on \(long(runsOut))"))
        }
        var xTicks: [Tick] = []
        for index in stride(from: 0, through: past - 1 + ahead, by: 7) {
            let date = burnDown.days[0].day.addingTimeInterval(Double(index) * 86_400)
            xTicks.append(Tick(y: bottom + 20, x: x(index), label: day(date)))
        }
        return BurnDownChart(
            days: past, summary: "\(past == 1 ? "One day" : "\(past) days") of balance from \(burnDown.days.first?.balance ?? 0) to \(burnDown.days.last?.balance ?? 0) credits; \(projectionText(burnDown))",
            yTicks: yTicks(max: topValue), xTicks: xTicks, todayX: x(todayIndex),
            balancePoints: points.prefix(past).map { "\(number($0.x)),\(number($0.y))" }.joined(separator: " "), projectionPoints: projection,
            points: points, markers: markers, zero: zero)
    }

    /// The projection in words: the date, or why there is none.
    static func projectionText(_ burnDown: BurnDown) -> String {
        let projection = burnDown.projection
        var text: String
        if let runsOut = projection.runsOutAt {
            text = burnDown.available <= 0 ? "No credits are available." : "At this rate the credits run out on \(long(runsOut))."
        } else if projection.reason == "more than a year" {
            text = "At this rate the credits last more than a year."
        } else if projection.reason == "topped up automatically" {
            text = "A top-up rule keeps the credits from running out at this rate."
        } else {
            text = "No credits were spent in the last \(max(burnDown.rateDays, 1)) days: the balance stays as it is."
        }
        if projection.expiring > 0 { text += " \(projection.expiring) credits expire unspent on the way." }
        if let requested = projection.topUpRequestedAt { text += " A top-up will be requested on \(long(requested))." }
        return text
    }

    /// Stacked bars: a column per day, a colour per key (the top five, then the other keys).
    static func keys(_ spend: KeySpend) -> KeyChart? {
        guard !spend.keys.isEmpty, spend.days.contains(where: { $0.spent.contains { $0 > 0 } }) else { return nil }
        let topValue = ceiling(spend.days.map { $0.spent.reduce(0, +) }.max() ?? 0)
        let slot = (right - left) / Double(spend.days.count)
        var bars: [Bar] = []
        for (index, day) in spend.days.enumerated() {
            var base = bottom
            for (series, spent) in day.spent.enumerated() where spent > 0 {
                let height = (bottom - top) * Double(spent) / Double(topValue)
                base -= height
                bars.append(Bar(
                    series: series, x: left + slot * Double(index) + 1, y: base, width: max(slot - 2, 1), height: height,
                    title: "\(Self.day(day.day)): \(spend.keys[series].name) spent \(spent)"))
            }
        }
        let xTicks = stride(from: 0, to: spend.days.count, by: 7).map {
            Tick(y: bottom + 20, x: left + slot * (Double($0) + 0.5), label: day(spend.days[$0].day))
        }
        return KeyChart(
            days: spend.days.count, yTicks: yTicks(max: topValue), xTicks: xTicks, bars: bars,
            legend: spend.keys.enumerated().map { Legend(series: $0.offset, name: $0.element.name, total: $0.element.total) })
    }
}
