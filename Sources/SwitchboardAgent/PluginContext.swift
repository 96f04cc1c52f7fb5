import Foundation
import Logging
import SwitchboardClient
import SwitchboardProtocol

/// What a plugin acts with: reply, send, react, type, open direct rooms, read history, look up users,
/// keep data and set schedules.
///
/// The agent makes one for each event (``message`` and ``roomId`` are the event's) and one for
/// ``Plugin/setUp(context:)`` and ``Plugin/run(context:)`` (where they are nil).
///
/// Everything the bot says goes through the bot's talk limit (``BotConfiguration/talkRate``): a
/// plugin that talks faster waits, and nothing is dropped.
public struct PluginContext: Sendable {
    /// The bot's name in the configuration.
    public var botName: String { runtime.name }
    /// The bot's user, as the server knows it.
    public var bot: User { runtime.user }
    /// The plugin's name.
    public let pluginName: String
    /// A logger with the bot and the plugin in its metadata.
    public let logger: Logger
    /// The plugin's own persistent storage (namespaced by bot and plugin).
    public let storage: PluginStorage
    /// The plugin's schedules.
    public let schedules: Schedules
    /// The room of the event being handled, if any.
    public let roomId: String?
    /// The message being handled, if any.
    public let message: IncomingMessage?
    let runtime: BotRuntime

    init(runtime: BotRuntime, pluginName: String, roomId: String? = nil, message: IncomingMessage? = nil) {
        self.runtime = runtime
        self.pluginName = pluginName
        var logger = runtime.logger
        logger[metadataKey: "switchboard.plugin"] = "\(pluginName)"
        self.logger = logger
        self.storage = PluginStorage(store: runtime.store, bot: runtime.name, plugin: pluginName)
        self.schedules = Schedules(scheduler: runtime.scheduler, plugin: pluginName)
        self.roomId = roomId ?? message?.roomId
        self.message = message
    }

    /// The same context about another room (and no message).
    func about(roomId: String?, message: IncomingMessage? = nil) -> PluginContext {
        PluginContext(runtime: runtime, pluginName: pluginName, roomId: roomId, message: message)
    }

    /// The client the bot is connected with, for what this context does not offer.
    public var client: ChatClient { runtime.client }

    /// The current time of the agent's clock (a ``TestClock`` in tests).
    public var now: Date { runtime.clock.now }

    /// The time zone schedules use (``AgentConfiguration/timeZone``).
    public var timeZone: TimeZone { runtime.timeZone }

    /// Whether `userId` is one of the agent's admins.
    public func isAdmin(_ userId: String) -> Bool { runtime.isAdmin(userId) }

    // MARK: Talking

    /// Answers the message being handled, in its room, as a reply to it (a thread when the server
    /// has threads).
    ///
    /// - Throws: ``ClientError`` when the server refuses the message; a ``ConfigurationError`` when
    ///   the context has no message (in `run` or `setUp`).
    @discardableResult
    public func reply(_ text: String, meta: JSONValue? = nil) async throws -> Message {
        guard let message else { throw ConfigurationError(code: .noRoom, "reply() needs a message: use send(_:to:) outside of a message handler") }
        return try await send(text, to: message.roomId, replyTo: message.message.id, meta: meta)
    }

    /// Says something in the event's room (not as a reply).
    @discardableResult
    public func say(_ text: String, meta: JSONValue? = nil) async throws -> Message {
        guard let roomId else { throw ConfigurationError(code: .noRoom, "say() needs an event in a room: use send(_:to:) here") }
        return try await send(text, to: roomId, meta: meta)
    }

    /// Sends a message to any room the bot is a member of, waiting for the room's talk limit.
    @discardableResult
    public func send(_ text: String, to roomId: String, replyTo: String? = nil, meta: JSONValue? = nil) async throws -> Message {
        try await runtime.talkLimiter.wait(room: roomId, clock: runtime.clock)
        return try await runtime.client.send(text, to: roomId, replyTo: replyTo, meta: meta)
    }

    /// Sends `text` to `userId` in the direct room of the bot and that user.
    @discardableResult
    public func sendDirect(_ text: String, to userId: String) async throws -> Message {
        let room = try await directRoom(with: userId)
        return try await send(text, to: room.id)
    }

    /// Reacts to the message being handled.
    public func react(_ reaction: String) async throws {
        guard let message else { throw ConfigurationError(code: .noRoom, "react() needs a message: use react(_:to:in:) here") }
        _ = try await runtime.client.react(reaction, to: message.message.id, in: message.roomId)
    }

    /// Reacts to any message.
    public func react(_ reaction: String, to messageId: String, in roomId: String, action: ReactionAction = .add) async throws {
        _ = try await runtime.client.react(reaction, to: messageId, in: roomId, action: action)
    }

    /// Shows the bot as typing in the event's room (or `roomId`) while `body` runs.
    public func withTyping<Result: Sendable>(in roomId: String? = nil, _ body: () async throws -> Result) async rethrows -> Result {
        guard let room = roomId ?? self.roomId else { return try await body() }
        _ = await runtime.client.sendTyping(true, in: room)
        do {
            let result = try await body()
            _ = await runtime.client.sendTyping(false, in: room)
            return result
        } catch {
            _ = await runtime.client.sendTyping(false, in: room)
            throw error
        }
    }

    // MARK: Reading

    /// The direct room of the bot and `userId`, created on first use.
    public func directRoom(with userId: String) async throws -> Room {
        try await runtime.client.directRoom(with: userId)
    }

    /// The newest `limit` messages of a room (or those before `before`), oldest first.
    public func history(in roomId: String? = nil, before: Int? = nil, limit: Int = 50) async throws -> [Message] {
        guard let room = roomId ?? self.roomId else { throw ConfigurationError(code: .noRoom, "history() needs a room") }
        return try await runtime.client.history(in: room, before: before, limit: limit).messages
    }

    /// A room the bot can see.
    public func room(_ roomId: String) async throws -> Room {
        try await runtime.rooms.room(roomId, client: runtime.client)
    }

    /// A user by id, from the agent's cache, asking the server on a miss.
    public func user(id: String) async throws -> User {
        try await runtime.users.user(id: id, client: runtime.client)
    }

    /// A user by username (without regard to case), or nil when there is none.
    public func user(named username: String) async throws -> User? {
        try await runtime.users.user(named: username, client: runtime.client)
    }

    /// Users whose username or display name contains `query`.
    public func users(matching query: String) async throws -> [User] {
        let users = try await runtime.client.users(matching: query)
        runtime.users.remember(users)
        return users
    }

    /// The display name of `userId`, or the id itself when the user cannot be found.
    public func displayName(of userId: String) async -> String {
        (try? await user(id: userId).displayName) ?? userId
    }
}
