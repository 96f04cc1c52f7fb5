import Foundation
import SwitchboardAgent

/// Reminders that survive restarts: `!remind 10m stand up`, `!remind tomorrow 9:00 call ana`,
/// `!remind 14:30 tea`, `!reminders`, `!forget 3`.
public struct RemindPlugin: Plugin {
    struct Reminder: Codable, Sendable {
        var roomId: String
        var userId: String
        var text: String
        var at: Date
    }

    /// The plugin.
    public init() {}

    public var name: String { "remind" }

    public var commands: [Command] {
        [
            Command(
                "remind", help: "Reminds you of TEXT at WHEN: 10m, 2h, 1d, 14:30, or tomorrow 9:00.",
                arguments: [.text("when-and-text", help: "such as: 10m stand up, or: tomorrow 9:00 call ana")]
            ) { call, context in
                let (at, text) = try Self.parse(call.string("when-and-text") ?? "", now: context.now, timeZone: context.timeZone)
                let reminders = context.storage.table("reminders", of: Reminder.self)
                let id = try await reminders.insert(Reminder(roomId: call.message.roomId, userId: call.message.userId, text: text, at: at))
                try await context.schedules.set("reminder-\(id)", .once(at: at), payload: String(id))
                try await context.reply("⏰ #\(id) \(Self.describe(at, now: context.now, timeZone: context.timeZone)): \(text)")
            },
            Command("reminders", help: "Lists your reminders.") { call, context in
                // Those due are being said (and deleted once said, by the schedule's own task): not listed.
                let mine = try await context.storage.table("reminders", of: Reminder.self).all().filter {
                    $0.row.userId == call.message.userId && $0.row.at > context.now
                }
                guard !mine.isEmpty else {
                    try await context.reply("No reminders. Set one: !remind 10m stand up")
                    return
                }
                try await context.reply(mine.map { "#\($0.id) \(Self.describe($0.row.at, now: context.now, timeZone: context.timeZone)): \($0.row.text)" }.joined(separator: "\n"))
            },
            Command("forget", help: "Cancels reminder ID.", arguments: [.integer("id", help: "the number !reminders shows", in: 1...Int.max)]) { call, context in
                let reminders = context.storage.table("reminders", of: Reminder.self)
                let id = call.integer("id")!
                guard let reminder = try await reminders.get(id), reminder.userId == call.message.userId else {
                    throw CommandError("you have no reminder #\(id); !reminders lists yours")
                }
                try await reminders.delete(id)
                try await context.schedules.cancel("reminder-\(id)")
                try await context.reply("Cancelled #\(id): \(reminder.text)")
            },
        ]
    }

    public func onSchedule(_ job: ScheduledJob, context: PluginContext) async throws {
        guard let id = job.payload.flatMap(Int.init) else { return }
        let reminders = context.storage.table("reminders", of: Reminder.self)
        guard let reminder = try await reminders.get(id) else { return }
        let name = await context.displayName(of: reminder.userId)
        let late = context.now.timeIntervalSince(reminder.at) > 60 ? " (late: the bot was away)" : ""
        try await context.send("⏰ \(name): \(reminder.text)\(late)", to: reminder.roomId)
        try await reminders.delete(id)
    }

    /// Reads `10m text`, `14:30 text`, `tomorrow 9:00 text`.
    static func parse(_ input: String, now: Date, timeZone: TimeZone) throws(CommandError) -> (Date, String) {
        var words = input.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        var day = calendar.startOfDay(for: now)
        var at: Date?
        if words.first?.lowercased() == "tomorrow" {
            words.removeFirst()
            day = calendar.date(byAdding: .day, value: 1, to: day)!
            guard let time = words.first.flatMap(ScheduleSpec.timeOfDay) else { throw CommandError("after tomorrow, give a time such as 9:00", showsUsage: true) }
            words.removeFirst()
            at = calendar.date(bySettingHour: time.0, minute: time.1, second: 0, of: day)
        } else if let time = words.first.flatMap(ScheduleSpec.timeOfDay) {
            words.removeFirst()
            at = calendar.date(bySettingHour: time.0, minute: time.1, second: 0, of: day)
            if let today = at, today <= now { at = calendar.date(byAdding: .day, value: 1, to: today) }
        } else if let seconds = words.first.flatMap(ScheduleSpec.seconds), seconds > 0 {
            guard seconds <= 366 * 86400 else { throw CommandError("at most a year ahead") }
            words.removeFirst()
            at = now.addingTimeInterval(seconds)
        }
        guard let at else { throw CommandError("start with when: 10m, 2h, 1d, 14:30 or tomorrow 9:00", showsUsage: true) }
        let text = words.joined(separator: " ")
        guard !text.isEmpty else { throw CommandError("say what to remind you of", showsUsage: true) }
        return (at, text)
    }

    static func describe(_ date: Date, now: Date, timeZone: TimeZone) -> String {
        let formatter = DateFormatter()
        formatter.timeZone = timeZone
        formatter.dateFormat = "EEE d MMM HH:mm"
        let minutes = Int((date.timeIntervalSince(now) / 60).rounded())
        let within = minutes < 60 ? "in \(minutes) min" : minutes < 48 * 60 ? "in \(minutes / 60) h \(minutes % 60) min" : "in \(minutes / 1440) days"
        return "\(formatter.string(from: date)) (\(within))"
    }

    /// `remind` in an agent's configuration.
    public static let factory = PluginFactory("remind") { RemindPlugin() }
}
