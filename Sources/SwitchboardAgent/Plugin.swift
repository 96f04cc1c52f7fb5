import Logging
import SwitchboardClient
import SwitchboardProtocol

/// A piece of a bot: it declares what it handles, and the agent calls it.
///
/// Every method has a default that does nothing, so a plugin implements only what it needs:
///
/// ```swift
/// struct Greeter: Plugin {
///     var commands: [Command] {
///         [Command("hello", help: "Says hello.", arguments: [.word("name", optional: true)]) { call, context in
///             try await context.reply("Hello, \(call.string("name") ?? "you")!")
///         }]
///     }
///     func onMemberAdded(_ change: MembershipChange, context: PluginContext) async throws {
///         try await context.send("Welcome, \(change.user.displayName)!", to: change.roomId)
///     }
/// }
/// ```
///
/// The agent never calls a plugin for the bot's own messages, nor by default for other bots'
/// messages (``BotConfiguration/ignoreBots``). A handler that throws is logged with the bot, the
/// plugin and the event, and the bot goes on.
public protocol Plugin: Sendable {
    /// The plugin's name in logs, in `!help` and in its storage namespace. Defaults to the name the
    /// configuration gave it (see ``PluginFactory``), or the type's name.
    var name: String { get }

    /// Commands with typed arguments and help text, such as `!roll 2d6`. Accepted with the bot's
    /// command prefix (`!` by default) or the bot's name (`dice: roll 2d6`), and without either in a
    /// direct room.
    var commands: [Command] { get }

    /// Handlers of messages matching a regular expression (every message, not only those addressed to the bot).
    var patterns: [Pattern] { get }

    /// Middleware that runs before every handler of the bot (not only this plugin's): access rules,
    /// quiet hours, auditing. Runs after the agent's own access control.
    var middleware: [any Middleware] { get }

    /// Called once when the bot has connected, before any event: register schedules here.
    func setUp(context: PluginContext) async throws

    /// A long-running part (a bridge, a poller): started after ``setUp(context:)``; restarted with
    /// backoff when it throws; cancelled when the bot stops (return when the task is cancelled).
    /// The default returns at once.
    func run(context: PluginContext) async throws

    /// Every message of a followed room (after commands and patterns were matched).
    func onMessage(_ message: IncomingMessage, context: PluginContext) async throws
    /// A message that mentions the bot by name (`@dice`, `dice:`), in a group room.
    func onMention(_ message: IncomingMessage, context: PluginContext) async throws
    /// A message in a direct room of the bot.
    func onDirectMessage(_ message: IncomingMessage, context: PluginContext) async throws
    /// Someone started or stopped typing.
    func onTyping(_ typing: TypingEvent, context: PluginContext) async throws
    /// Someone who shares a room with the bot came online or went offline.
    func onPresence(_ presence: PresenceEvent, context: PluginContext) async throws
    /// A reaction was added or removed.
    func onReaction(_ reaction: ReactionEvent, context: PluginContext) async throws
    /// A user became a member of a followed room.
    func onMemberAdded(_ change: MembershipChange, context: PluginContext) async throws
    /// A user stopped being a member of a followed room.
    func onMemberRemoved(_ change: MembershipChange, context: PluginContext) async throws
    /// A user's first connection subscribed to a followed room (they opened it).
    func onJoin(_ visit: RoomVisit, context: PluginContext) async throws
    /// A user's last connection left a followed room.
    func onLeave(_ visit: RoomVisit, context: PluginContext) async throws
    /// The bot started following a room: at start for each room, and for rooms that appear later.
    func onRoom(_ room: Room, context: PluginContext) async throws
    /// A schedule of this plugin came due (see ``Schedules``).
    func onSchedule(_ job: ScheduledJob, context: PluginContext) async throws
}

extension Plugin {
    public var name: String { String(describing: Self.self) }
    public var commands: [Command] { [] }
    public var patterns: [Pattern] { [] }
    public var middleware: [any Middleware] { [] }
    public func setUp(context: PluginContext) async throws {}
    public func run(context: PluginContext) async throws {}
    public func onMessage(_ message: IncomingMessage, context: PluginContext) async throws {}
    public func onMention(_ message: IncomingMessage, context: PluginContext) async throws {}
    public func onDirectMessage(_ message: IncomingMessage, context: PluginContext) async throws {}
    public func onTyping(_ typing: TypingEvent, context: PluginContext) async throws {}
    public func onPresence(_ presence: PresenceEvent, context: PluginContext) async throws {}
    public func onReaction(_ reaction: ReactionEvent, context: PluginContext) async throws {}
    public func onMemberAdded(_ change: MembershipChange, context: PluginContext) async throws {}
    public func onMemberRemoved(_ change: MembershipChange, context: PluginContext) async throws {}
    public func onJoin(_ visit: RoomVisit, context: PluginContext) async throws {}
    public func onLeave(_ visit: RoomVisit, context: PluginContext) async throws {}
    public func onRoom(_ room: Room, context: PluginContext) async throws {}
    public func onSchedule(_ job: ScheduledJob, context: PluginContext) async throws {}
}

/// A handler of messages that match a regular expression (Hubot's `hear`, Slack Bolt's `message(/re/)`).
///
/// ```swift
/// Pattern(#"(\w+)\+\+"#) { match, context in
///     try await context.reply("\(match.captures[0]) gained a point")
/// }
/// ```
public struct Pattern: Sendable {
    /// The expression, as written.
    public let source: String
    let regex: SendableRegex
    let handler: @Sendable (PatternMatch, PluginContext) async throws -> Void

    /// A handler for messages whose text contains a match of `pattern` (an ICU regular expression, as
    /// `Regex(_:)` reads it). Called once per message, with the first match.
    ///
    /// - Precondition: `pattern` is a valid regular expression (a programming error otherwise).
    public init(_ pattern: String, handler: @escaping @Sendable (PatternMatch, PluginContext) async throws -> Void) {
        self.source = pattern
        do {
            self.regex = SendableRegex(try Regex(pattern))
        } catch {
            preconditionFailure("invalid regular expression \(pattern): \(error)")
        }
        self.handler = handler
    }
}

/// `Regex<AnyRegexOutput>` is not `Sendable`; a pattern's is built once and only read.
struct SendableRegex: @unchecked Sendable {
    let regex: Regex<AnyRegexOutput>
    init(_ regex: Regex<AnyRegexOutput>) { self.regex = regex }

    func firstMatch(in text: String) -> (whole: String, captures: [String?])? {
        guard let match = try? regex.firstMatch(in: text) else { return nil }
        let output = match.output
        var captures: [String?] = []
        for index in output.indices.dropFirst() {
            captures.append(output[index].substring.map(String.init))
        }
        return (String(text[match.range]), captures)
    }
}

/// A message that matched a ``Pattern``.
public struct PatternMatch: Sendable {
    /// The message.
    public var message: IncomingMessage
    /// The text that matched.
    public var matched: String
    /// The capture groups, in order (`nil` for a group that took no part in the match).
    public var captures: [String?]
}

/// Makes a plugin from its configuration: how the agent knows a plugin by the name a YAML file uses.
///
/// ```swift
/// let factories: [PluginFactory] = [
///     PluginFactory("echo") { EchoPlugin() },
///     PluginFactory("welcome", configuration: Welcome.Configuration.self) { Welcome(configuration: $0) },
/// ]
/// ```
public struct PluginFactory: Sendable {
    /// The name a configuration file uses.
    public let name: String
    /// Whether the plugin reads a configuration.
    public let takesConfiguration: Bool
    let make: @Sendable (ConfigurationSource) throws -> any Plugin

    /// A plugin without configuration.
    public init(_ name: String, _ make: @escaping @Sendable () throws -> any Plugin) {
        self.name = name
        self.takesConfiguration = false
        self.make = { _ in try make() }
    }

    /// A plugin with a typed configuration, decoded from the `config` of its entry in the agent's
    /// YAML (an empty mapping when there is none) and checked when the agent starts: a field that is
    /// missing or of the wrong type is reported with the bot, the plugin and the field's path.
    /// `make` may throw ``ConfigurationError`` (or any error) to refuse a value.
    public init<Configuration: Decodable & Sendable>(
        _ name: String, configuration: Configuration.Type, _ make: @escaping @Sendable (Configuration) throws -> any Plugin
    ) {
        self.name = name
        self.takesConfiguration = true
        self.make = { source in try make(try source.decode(Configuration.self)) }
    }
}

/// A plugin given by name with a name of its own: what ``PluginFactory`` makes and what a
/// programmatic configuration holds.
struct NamedPlugin: Sendable {
    var name: String
    var plugin: any Plugin
}
