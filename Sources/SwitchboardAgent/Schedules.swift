import Foundation
import Logging
import SQLiteNIO
import Synchronization

/// The time the agent runs on. ``SystemClock`` in production; a test clock moves only when told.
public protocol AgentClock: Sendable {
    /// Now.
    var now: Date { get }
    /// Returns at `deadline` (or at once when it passed); throws `CancellationError` when cancelled.
    func sleep(until deadline: Date) async throws
}

/// The wall clock.
public struct SystemClock: AgentClock {
    /// The wall clock.
    public init() {}
    public var now: Date { Date() }
    public func sleep(until deadline: Date) async throws {
        // A day at a time: a deadline far ahead (a schedule every 1e300 seconds) would overflow a Duration.
        while case let seconds = deadline.timeIntervalSinceNow, seconds > 0 {
            try await Task.sleep(for: .seconds(min(seconds, 86400)))
        }
    }
}

/// When a schedule fires.
///
/// ```swift
/// .every(.seconds(300))                       // every five minutes
/// .daily(hour: 9, minute: 0)                  // at 09:00 in the agent's time zone
/// .weekly(weekday: 2, hour: 9, minute: 30)    // Mondays at 09:30 (1 is Sunday)
/// .once(at: date)                             // one time
/// ```
public enum ScheduleSpec: Codable, Sendable, Hashable, CustomStringConvertible {
    /// Every so many seconds, from when it was set.
    case every(seconds: Double)
    /// Every day at a time of day, in the agent's time zone.
    case daily(hour: Int, minute: Int)
    /// Every week on a weekday (1 Sunday … 7 Saturday) at a time of day.
    case weekly(weekday: Int, hour: Int, minute: Int)
    /// Once, at a moment.
    case once(at: Date)

    /// Every `interval`.
    public static func every(_ interval: Duration) -> ScheduleSpec {
        .every(seconds: Double(interval.components.seconds) + Double(interval.components.attoseconds) / 1e18)
    }

    /// Reads `every 30s`, `every 5m`, `every 2h`, `daily 09:00`, `weekly mon 09:00`.
    public init?(parsing text: String) {
        let words = text.lowercased().split(separator: " ").map(String.init)
        switch words.first {
        case "every" where words.count == 2:
            guard let seconds = Self.seconds(words[1]), seconds > 0 else { return nil }
            self = .every(seconds: seconds)
        case "daily" where words.count == 2:
            guard case let (hour, minute)? = Self.timeOfDay(words[1]) else { return nil }
            self = .daily(hour: hour, minute: minute)
        case "weekly" where words.count == 3:
            let days = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
            guard let day = days.firstIndex(where: { words[1].hasPrefix($0) }), case let (hour, minute)? = Self.timeOfDay(words[2]) else { return nil }
            self = .weekly(weekday: day + 1, hour: hour, minute: minute)
        default:
            return nil
        }
    }

    /// `30s`, `10m`, `2h`, `1d` in seconds.
    public static func seconds(_ text: String) -> Double? {
        guard let unit = text.last, let value = Double(text.dropLast()), value.isFinite, value >= 0 else { return nil }
        switch unit {
        case "s": return value
        case "m": return value * 60
        case "h": return value * 3600
        case "d": return value * 86400
        default: return nil
        }
    }

    /// `9:00`, `09:30` as hour and minute.
    public static func timeOfDay(_ text: String) -> (Int, Int)? {
        let parts = text.split(separator: ":")
        guard parts.count == 2, let hour = Int(parts[0]), let minute = Int(parts[1]), (0..<24).contains(hour), (0..<60).contains(minute) else { return nil }
        return (hour, minute)
    }

    /// The first time strictly after `date` when this fires; nil for a one-off in the past.
    public func next(after date: Date, timeZone: TimeZone) -> Date? {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        switch self {
        case .every(let seconds):
            return date.addingTimeInterval(max(seconds, 0.001))
        case .daily(let hour, let minute):
            return calendar.nextDate(after: date, matching: DateComponents(hour: hour, minute: minute, second: 0), matchingPolicy: .nextTime)
        case .weekly(let weekday, let hour, let minute):
            return calendar.nextDate(after: date, matching: DateComponents(hour: hour, minute: minute, second: 0, weekday: weekday), matchingPolicy: .nextTime)
        case .once(let at):
            return at > date ? at : nil
        }
    }

    public var description: String {
        switch self {
        case .every(let seconds): "every \(seconds)s"
        case .daily(let hour, let minute): String(format: "daily %02d:%02d", hour, minute)
        case .weekly(let weekday, let hour, let minute): String(format: "weekly %d %02d:%02d", weekday, hour, minute)
        case .once(let at): "once at \(at)"
        }
    }
}

/// A schedule that came due, as ``Plugin/onSchedule(_:context:)`` gets it.
public struct ScheduledJob: Sendable, Hashable {
    /// The id the plugin gave it.
    public var id: String
    /// When it fires.
    public var spec: ScheduleSpec
    /// What the plugin stored with it.
    public var payload: String?
    /// When it was due; earlier than now when it was missed while the agent was down (it fires once then).
    public var dueAt: Date
}

/// A plugin's schedules: set, list and cancel them. They are kept in the agent's storage, so they
/// survive restarts; one that came due while the agent was down fires once when it is back.
///
/// ```swift
/// try await context.schedules.set("standup", .weekly(weekday: 2, hour: 9, minute: 0), payload: roomId)
/// try await context.schedules.set("reminder-7", .once(at: tomorrowNine), payload: json)
/// ```
public struct Schedules: Sendable {
    let scheduler: Scheduler
    let plugin: String

    /// Sets (or replaces) the schedule `id`. A one-off in the past fires at once.
    public func set(_ id: String, _ spec: ScheduleSpec, payload: String? = nil) async throws {
        try await scheduler.set(plugin: plugin, id: id, spec: spec, payload: payload)
    }

    /// Cancels the schedule `id`; true when it existed.
    @discardableResult
    public func cancel(_ id: String) async throws -> Bool {
        try await scheduler.cancel(plugin: plugin, id: id)
    }

    /// The plugin's schedules, soonest first.
    public func list() async throws -> [ScheduledJob] {
        try await scheduler.list(plugin: plugin)
    }
}

/// Fires a bot's schedules on time, from the agent's storage.
final class Scheduler: Sendable {
    let store: AgentStore
    let bot: String
    let clock: any AgentClock
    let timeZone: TimeZone
    let bell = Bell()

    init(store: AgentStore, bot: String, clock: any AgentClock, timeZone: TimeZone) {
        self.store = store
        self.bot = bot
        self.clock = clock
        self.timeZone = timeZone
    }

    func set(plugin: String, id: String, spec: ScheduleSpec, payload: String?) async throws {
        let now = clock.now
        let first: Date
        if case .once(let at) = spec { first = at } else { first = spec.next(after: now, timeZone: timeZone) ?? now }
        let specText = String(decoding: try JSONEncoder().encode(spec), as: UTF8.self)
        _ = try await store.query(
            """
            INSERT INTO schedules (bot, plugin, id, spec, payload, next_fire) VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (bot, plugin, id) DO UPDATE SET spec = excluded.spec, payload = excluded.payload, next_fire = excluded.next_fire
            """,
            [.text(bot), .text(plugin), .text(id), .text(specText), payload.map { .text($0) } ?? .null, .float(first.timeIntervalSince1970)])
        bell.ring()
    }

    func cancel(plugin: String, id: String) async throws -> Bool {
        let rows = try await store.query(
            "DELETE FROM schedules WHERE bot = ? AND plugin = ? AND id = ? RETURNING id", [.text(bot), .text(plugin), .text(id)])
        bell.ring()
        return !rows.isEmpty
    }

    func list(plugin: String) async throws -> [ScheduledJob] {
        let rows = try await store.query(
            "SELECT id, spec, payload, next_fire FROM schedules WHERE bot = ? AND plugin = ? ORDER BY next_fire, id", [.text(bot), .text(plugin)])
        return rows.compactMap { Self.job(from: $0)?.job }
    }

    static func job(from row: SQLiteRow) -> (plugin: String, job: ScheduledJob)? {
        guard let id = row.column("id")?.string, let specText = row.column("spec")?.string,
              let spec = try? JSONDecoder().decode(ScheduleSpec.self, from: Data(specText.utf8)),
              let next = row.column("next_fire")?.double
        else { return nil }
        return (row.column("plugin")?.string ?? "", ScheduledJob(id: id, spec: spec, payload: row.column("payload")?.string, dueAt: Date(timeIntervalSince1970: next)))
    }

    /// Fires due schedules through `fire`, in time order, until cancelled. A recurring schedule's next
    /// time is counted from now, so one missed while the agent was down fires once, not once per miss.
    func run(logger: Logger, fire: @Sendable (String, ScheduledJob) async -> Void) async {
        while !Task.isCancelled {
            do {
                let rows = try await store.query(
                    "SELECT plugin, id, spec, payload, next_fire FROM schedules WHERE bot = ? ORDER BY next_fire LIMIT 1", [.text(bot)])
                guard case let (plugin, job)? = rows.first.flatMap(Self.job(from:)) else {
                    await bell.wait(until: nil, clock: clock)
                    continue
                }
                let now = clock.now
                guard job.dueAt <= now else {
                    await bell.wait(until: job.dueAt, clock: clock)
                    continue
                }
                if try await take(plugin: plugin, job: job) { await fire(plugin, job) }
            } catch {
                logger.warning("schedules: \(error)")
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Moves a due job to its next time (or removes a one-off) before it fires, so that a crash in
    /// the handler does not fire it again and again. False when the job changed since it was read
    /// (cancelled, set again, or taken by another scheduler of the bot): then it must not fire.
    func take(plugin: String, job: ScheduledJob) async throws -> Bool {
        let taken: [SQLiteRow]
        if let next = job.spec.next(after: max(clock.now, job.dueAt), timeZone: timeZone), !isOnce(job.spec) {
            taken = try await store.query(
                "UPDATE schedules SET next_fire = ? WHERE bot = ? AND plugin = ? AND id = ? AND next_fire = ? RETURNING id",
                [.float(next.timeIntervalSince1970), .text(bot), .text(plugin), .text(job.id), .float(job.dueAt.timeIntervalSince1970)])
        } else {
            taken = try await store.query(
                "DELETE FROM schedules WHERE bot = ? AND plugin = ? AND id = ? AND next_fire = ? RETURNING id",
                [.text(bot), .text(plugin), .text(job.id), .float(job.dueAt.timeIntervalSince1970)])
        }
        return !taken.isEmpty
    }

    private func isOnce(_ spec: ScheduleSpec) -> Bool {
        if case .once = spec { return true }
        return false
    }
}

/// Wakes one waiter: the scheduler when a schedule changes, or when its clock reaches a deadline.
final class Bell: Sendable {
    private struct State {
        var rung = false
        var waiter: CheckedContinuation<Void, Never>?
    }
    private let state = Mutex(State())

    func ring() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.rung = true
            return nil
        }
        waiter?.resume()
    }

    /// Returns when rung, at `deadline` on `clock`, or when cancelled.
    func wait(until deadline: Date?, clock: any AgentClock) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.waitForRing() }
            if let deadline {
                group.addTask { try? await clock.sleep(until: deadline) }
            }
            await group.next()
            group.cancelAll()
        }
    }

    private func waitForRing() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    if state.rung || Task.isCancelled {
                        state.rung = false
                        return true
                    }
                    state.waiter = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            state.withLock { state -> CheckedContinuation<Void, Never>? in
                defer { state.waiter = nil }
                return state.waiter
            }?.resume()
        }
    }
}
