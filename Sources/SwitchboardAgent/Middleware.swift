import Foundation
import Synchronization

/// Runs before a bot's handlers, and decides whether they run: call `next()` to let the event
/// through, return without calling it to stop it (Hubot's listener middleware, DiscordBM's pre-event hook).
///
/// ```swift
/// struct QuietHours: Middleware {
///     func handle(_ event: AgentEvent, context: PluginContext, next: () async throws -> Void) async throws {
///         let hour = Calendar.current.component(.hour, from: context.now)
///         if case .command = event, hour < 8 { return }   // commands sleep until 8
///         try await next()
///     }
/// }
/// ```
public protocol Middleware: Sendable {
    /// Handles `event`; calls `next` to go on to the next middleware and then the handlers.
    func handle(_ event: AgentEvent, context: PluginContext, next: () async throws -> Void) async throws
}

/// Who may call a command: the agent's access control, checked before any plugin's middleware.
///
/// Rules come from the configuration (``BotConfiguration/access``); the first rule whose `command`
/// matches (or `*`) decides. Users are given by username or id, rooms by name or id.
///
/// ```yaml
/// access:
///   - command: remind
///     denyUsers: [spammer]
///   - command: "*"
///     denyRooms: [announcements]
///   - command: shutdown
///     adminOnly: true
/// ```
public struct AccessRule: Codable, Sendable, Hashable {
    /// The command's name, or `*` for every command.
    public var command: String
    /// When set, only these users may call it.
    public var allowUsers: [String]?
    /// These users may not.
    public var denyUsers: [String]?
    /// When set, it may be called only in these rooms.
    public var allowRooms: [String]?
    /// It may not be called in these rooms.
    public var denyRooms: [String]?
    /// Only admins may call it.
    public var adminOnly: Bool?

    /// A rule for `command`.
    public init(command: String, allowUsers: [String]? = nil, denyUsers: [String]? = nil, allowRooms: [String]? = nil, denyRooms: [String]? = nil, adminOnly: Bool? = nil) {
        self.command = command
        self.allowUsers = allowUsers
        self.denyUsers = denyUsers
        self.allowRooms = allowRooms
        self.denyRooms = denyRooms
        self.adminOnly = adminOnly
    }

    /// Why `user` may not call the command in `room`, or nil when they may. Admins may call everything.
    func refusal(user: (id: String, username: String?), isAdmin: Bool, room: (id: String, name: String)) -> String? {
        if isAdmin { return nil }
        func contains(_ list: [String]?, _ values: [String?]) -> Bool {
            guard let list else { return false }
            return values.contains { value in value.map { v in list.contains { $0.lowercased() == v.lowercased() } } ?? false }
        }
        let userKeys = [user.id, user.username]
        let roomKeys: [String?] = [room.id, room.name]
        if adminOnly == true { return "only admins may use this command" }
        if contains(denyUsers, userKeys) { return "you may not use this command" }
        if let allowUsers, !contains(allowUsers, userKeys) { return "you may not use this command" }
        if contains(denyRooms, roomKeys) { return "this command is not allowed in this room" }
        if let allowRooms, !contains(allowRooms, roomKeys) { return "this command is not allowed in this room" }
        return nil
    }
}

/// How fast a bot may talk in one room. Past it, sending waits; nothing is dropped.
public struct TalkRate: Codable, Sendable, Hashable {
    /// Messages a second, on average.
    public var perSecond: Double
    /// Messages that may go at once.
    public var burst: Int

    /// A rate; the default, 1 a second with a burst of 5, keeps a bot from flooding a room.
    public init(perSecond: Double = 1, burst: Int = 5) {
        self.perSecond = perSecond
        self.burst = burst
    }

    /// Reads a rate; a field left out takes its default.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let defaults = TalkRate()
        self.init(
            perSecond: try container.decodeIfPresent(Double.self, forKey: .perSecond) ?? defaults.perSecond,
            burst: try container.decodeIfPresent(Int.self, forKey: .burst) ?? defaults.burst)
    }

    /// The slowest rate other than none: one message a day (a slower one would wait past what a
    /// `Duration` holds).
    static let slowest = 1.0 / 86400
    /// The fastest rate.
    static let fastest = 1_000_000.0

    /// Why `perSecond` cannot be used, or nil.
    var problem: String? {
        if perSecond == 0 || (Self.slowest...Self.fastest).contains(perSecond) { return nil }
        return "talkRate.perSecond must be 0 (no limit) or from 1/86400 (one message a day) to 1000000, not \(perSecond)"
    }
}

/// A token bucket per room; `wait` takes a token, sleeping until one is there.
final class TalkLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }
    let rate: TalkRate
    private let buckets = Mutex<[String: Bucket]>([:])

    init(rate: TalkRate) {
        self.rate = rate
    }

    /// Takes a token of `room`'s bucket, waiting as long as needed. The wait is on the real clock:
    /// a test clock moves schedules, not the server's rate limits.
    func wait(room: String, clock: any AgentClock) async throws {
        guard rate.perSecond > 0 else { return }
        let now = ContinuousClock.now
        let delay = buckets.withLock { buckets -> Duration in
            var bucket = buckets[room] ?? Bucket(tokens: Double(max(rate.burst, 1)), updated: now)
            let elapsed = now - bucket.updated
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            bucket.tokens = min(Double(max(rate.burst, 1)), bucket.tokens + seconds * rate.perSecond)
            bucket.updated = now
            // Taking the token now, even when it is not there yet, reserves this caller's place in line.
            bucket.tokens -= 1
            buckets[room] = bucket
            return bucket.tokens >= 0 ? .zero : .seconds(-bucket.tokens / rate.perSecond)
        }
        if delay > .zero { try await Task.sleep(for: delay) }
    }
}
