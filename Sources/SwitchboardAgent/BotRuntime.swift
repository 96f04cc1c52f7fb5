import Foundation
import Logging
import Synchronization
import SwitchboardClient
import SwitchboardProtocol

/// A connected bot: its client, its user, its plugins and what they share. One per connection;
/// made again when the bot reconnects from scratch.
final class BotRuntime: Sendable {
    let name: String
    let user: User
    let client: ChatClient
    let logger: Logger
    let store: AgentStore
    let scheduler: Scheduler
    let clock: any AgentClock
    let timeZone: TimeZone
    let talkLimiter: TalkLimiter
    let users = UserDirectory()
    let rooms = RoomDirectory()
    let configuration: BotConfiguration
    let admins: [String]
    let statistics: BotStatistics
    /// The plugins, swapped on reload without reconnecting.
    let plugins: Mutex<[NamedPlugin]>

    init(
        name: String, user: User, client: ChatClient, logger: Logger, store: AgentStore, clock: any AgentClock, timeZone: TimeZone,
        configuration: BotConfiguration, admins: [String], plugins: [NamedPlugin], statistics: BotStatistics
    ) {
        self.name = name
        self.user = user
        self.client = client
        self.logger = logger
        self.store = store
        self.clock = clock
        self.timeZone = timeZone
        self.scheduler = Scheduler(store: store, bot: name, clock: clock, timeZone: timeZone)
        self.talkLimiter = TalkLimiter(rate: configuration.talkRate)
        self.configuration = configuration
        self.admins = admins.map { $0.lowercased() }
        self.plugins = Mutex(plugins)
        self.statistics = statistics
        users.remember([user])
    }

    func isAdmin(_ userId: String) -> Bool {
        if admins.contains(userId.lowercased()) { return true }
        guard let user = users.cached(userId) else { return false }
        return admins.contains(user.username.lowercased())
    }

    func context(_ plugin: String, roomId: String? = nil, message: IncomingMessage? = nil) -> PluginContext {
        PluginContext(runtime: self, pluginName: plugin, roomId: roomId, message: message)
    }

    var names: [String] { [user.username, user.displayName, name].filter { !$0.contains(" ") } }

    // MARK: Dispatch

    /// Hands one event to the middleware and the plugins; never throws (handlers' errors are logged).
    func handle(_ event: ClientEvent) async {
        switch event {
        case .message(let message):
            await handle(message)
        case .typing(let typing):
            guard typing.userId != user.id else { return }
            await deliver(.typing(typing), roomId: typing.roomId) { plugin, context in try await plugin.onTyping(typing, context: context) }
        case .presence(let presence):
            guard presence.userId != user.id else { return }
            await deliver(.presence(presence), roomId: nil) { plugin, context in try await plugin.onPresence(presence, context: context) }
        case .reaction(let reaction):
            guard reaction.userId != user.id else { return }
            await deliver(.reaction(reaction), roomId: reaction.roomId) { plugin, context in try await plugin.onReaction(reaction, context: context) }
        case .memberJoined(let roomId, let joined):
            users.remember([joined])
            let visit = RoomVisit(roomId: roomId, user: joined)
            await deliver(.join(visit), roomId: roomId) { plugin, context in try await plugin.onJoin(visit, context: context) }
        case .memberLeft(let roomId, let left):
            users.remember([left])
            let visit = RoomVisit(roomId: roomId, user: left)
            await deliver(.leave(visit), roomId: roomId) { plugin, context in try await plugin.onLeave(visit, context: context) }
        case .room(let data):
            await roomAppeared(data)
        case .subscriptionEnded(let roomId, let error):
            logger.info("no longer following a room", metadata: ["switchboard.room": "\(roomId)", "switchboard.reason": "\(error)"])
            rooms.forget(roomId)
        case .member(let change):
            await memberChanged(change)
        case .status, .messageSent, .messageRejected, .gap, .caughtUp, .ready, .unknown:
            break
        }
    }

    func memberChanged(_ change: MembershipChange) async {
        // A newer server's kinds of change mean nothing to the plugins yet.
        guard change.change == .added || change.change == .removed else { return }
        let added = change.change == .added
        users.remember([change.user])
        rooms.update(change.roomId) { room in
            if added { if !room.members.contains(change.user.id) { room.members.append(change.user.id) } } else { room.members.removeAll { $0 == change.user.id } }
        }
        if !added, change.user.id == user.id {
            // The bot was removed: the client ends the subscription itself. (Unsubscribing would keep
            // `followAllRooms` from following the room again should the bot be added back.)
            rooms.forget(change.roomId)
            return
        }
        if added {
            await deliver(.memberAdded(change), roomId: change.roomId) { plugin, context in try await plugin.onMemberAdded(change, context: context) }
        } else {
            await deliver(.memberRemoved(change), roomId: change.roomId) { plugin, context in try await plugin.onMemberRemoved(change, context: context) }
        }
    }

    /// A room the bot is not subscribed to changed: with `rooms: all` the client follows it from now on; the plugins hear of it.
    func roomAppeared(_ data: RoomEventData) async {
        guard configuration.rooms.all, rooms.cached(data.room.id) == nil, data.room.members.contains(user.id) else { return }
        rooms.remember(data.room)
        await deliver(.room(data.room), roomId: data.room.id) { plugin, context in try await plugin.onRoom(data.room, context: context) }
    }

    /// Subscribes to a room from `after` (or the stored position) and tells the plugins.
    @discardableResult
    func follow(_ roomId: String, after: Int?) async -> Bool {
        do {
            let stored = try await store.positions(bot: name)[roomId]
            let room = try await client.subscribe(to: roomId, after: stored ?? after).room
            let isNew = rooms.cached(room.id) == nil
            rooms.remember(room)
            if isNew {
                await deliver(.room(room), roomId: room.id) { plugin, context in try await plugin.onRoom(room, context: context) }
            }
            return true
        } catch {
            logger.warning("cannot follow a room: \(error)", metadata: ["switchboard.room": "\(roomId)"])
            return false
        }
    }

    /// Hands a message to the plugins, then records it as handled.
    func handle(_ message: Message) async {
        await dispatch(message)
        do {
            try await store.setPosition(bot: name, room: message.roomId, seq: message.seq)
        } catch {
            logger.warning("cannot record the handled position: \(error)", metadata: ["switchboard.room": "\(message.roomId)"])
        }
    }

    private func dispatch(_ message: Message) async {
        guard message.userId != user.id else { return }
        let sender = try? await users.user(id: message.userId, client: client)
        if configuration.ignoreBots, sender?.isBot == true { return }
        guard let room = try? await rooms.room(message.roomId, client: client) else { return }
        let names = self.names
        let stripped = CommandParser.stripAddress(Substring(message.content), names: names)
        let incoming = IncomingMessage(
            message: message, room: room, sender: sender, mentionsBot: CommandParser.mentions(message.content, names: names),
            text: (stripped.map(String.init) ?? message.content).trimmingCharacters(in: .whitespacesAndNewlines))
        await deliverMessage(incoming)
    }

    func deliverMessage(_ incoming: IncomingMessage) async {
        let plugins = self.plugins.withLock { $0 }
        await throughMiddleware(.message(incoming), roomId: incoming.roomId, message: incoming, plugins: plugins) {
            await self.runCommand(incoming, plugins: plugins)
            for entry in plugins {
                let context = self.context(entry.name, message: incoming)
                for pattern in entry.plugin.patterns {
                    guard let match = pattern.regex.firstMatch(in: incoming.content) else { continue }
                    await self.invoke(entry.name, "pattern", context) {
                        try await pattern.handler(PatternMatch(message: incoming, matched: match.whole, captures: match.captures), context)
                    }
                }
                if incoming.isDirect {
                    await self.invoke(entry.name, "directMessage", context) { try await entry.plugin.onDirectMessage(incoming, context: context) }
                } else if incoming.mentionsBot {
                    await self.invoke(entry.name, "mention", context) { try await entry.plugin.onMention(incoming, context: context) }
                }
                await self.invoke(entry.name, "message", context) { try await entry.plugin.onMessage(incoming, context: context) }
            }
        }
    }

    func runCommand(_ incoming: IncomingMessage, plugins: [NamedPlugin]) async {
        let parser = CommandParser(prefix: configuration.prefix, botNames: names)
        guard case let (word, rest, addressed)? = parser.find(in: incoming) else { return }
        let all = plugins.flatMap { entry in entry.plugin.commands.map { (plugin: entry.name, command: $0) } }
        let helpContext = context("help", message: incoming)
        if word == "help" {
            await invoke("help", "command:help", helpContext) {
                if rest.isEmpty {
                    let visible = all.filter { !$0.command.adminOnly || self.isAdmin(incoming.userId) }
                    try await helpContext.reply(Help.overview(visible, prefix: self.configuration.prefix, botName: self.user.username))
                } else {
                    let wanted = rest.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: self.configuration.prefix + " "))
                    if case let (plugin, command)? = all.first(where: { $0.command.answers(to: wanted) }) {
                        try await helpContext.reply(Help.detail(command, plugin: plugin, prefix: self.configuration.prefix))
                    } else {
                        try await helpContext.reply("No command \(wanted). \(self.configuration.prefix)help lists them.")
                    }
                }
            }
            return
        }
        guard case let (plugin, command)? = all.first(where: { $0.command.answers(to: word) }) else {
            if addressed, !incoming.isDirect {
                await invoke("help", "command:unknown", helpContext) {
                    try await helpContext.reply("I don't know \(word). Try \(self.configuration.prefix)help.")
                }
            }
            return
        }
        let context = self.context(plugin, message: incoming)
        if let refusal = accessRefusal(command, incoming) {
            await invoke(plugin, "command:\(command.name)", context) { try await context.reply("⛔ \(refusal)") }
            return
        }
        let values: [String: ArgumentValue]
        do {
            values = try command.parse(rest)
        } catch {
            await invoke(plugin, "command:\(command.name)", context) {
                try await context.reply("\(error.message). Usage: \(command.usage(prefix: self.configuration.prefix))")
            }
            return
        }
        let call = CommandCall(command: command, message: incoming, argumentText: rest, values: values)
        await throughMiddleware(.command(call), roomId: incoming.roomId, message: incoming, plugins: plugins) {
            await self.invoke(plugin, "command:\(command.name)", context) {
                do {
                    try await command.handler(call, context)
                } catch let error as CommandError {
                    try await context.reply(error.message + (error.showsUsage ? ". Usage: \(command.usage(prefix: self.configuration.prefix))" : ""))
                } catch let error as CancellationError {
                    throw error
                } catch {
                    _ = try? await context.reply("⚠️ \(self.configuration.prefix)\(command.name) failed; the bot's log says why.")
                    throw error
                }
            }
        }
    }

    func accessRefusal(_ command: Command, _ incoming: IncomingMessage) -> String? {
        let isAdmin = isAdmin(incoming.userId)
        if command.adminOnly, !isAdmin { return "only admins may use \(configuration.prefix)\(command.name)" }
        guard let rule = configuration.access.first(where: { $0.command == "*" || command.answers(to: $0.command.lowercased()) }) else { return nil }
        return rule.refusal(
            user: (incoming.userId, incoming.sender?.username), isAdmin: isAdmin, room: (incoming.roomId, incoming.room.name))
    }

    /// Runs `handler` for every plugin (or `only` one), after the middleware let the event through.
    func deliver(
        _ event: AgentEvent, roomId: String?, only: NamedPlugin? = nil, _ handler: @escaping @Sendable (any Plugin, PluginContext) async throws -> Void
    ) async {
        let plugins = self.plugins.withLock { $0 }
        await throughMiddleware(event, roomId: roomId, message: nil, plugins: plugins) {
            for entry in only.map({ [$0] }) ?? plugins {
                let context = self.context(entry.name, roomId: roomId)
                await self.invoke(entry.name, event.kind, context) { try await handler(entry.plugin, context) }
            }
        }
    }

    /// The plugins' middleware, in plugin order, then `body`. A middleware that throws stops the event (and is logged).
    func throughMiddleware(_ event: AgentEvent, roomId: String?, message: IncomingMessage?, plugins: [NamedPlugin], _ body: @escaping @Sendable () async -> Void) async {
        let chain = plugins.flatMap { entry in entry.plugin.middleware.map { (entry.name, $0) } }
        guard !chain.isEmpty else { return await body() }
        @Sendable func step(_ index: Int) async throws {
            guard index < chain.count else { return await body() }
            let (plugin, middleware) = chain[index]
            try await middleware.handle(event, context: context(plugin, roomId: roomId, message: message)) { try await step(index + 1) }
        }
        await invoke("middleware", event.kind, context("middleware", roomId: roomId, message: message)) { try await step(0) }
    }

    /// Runs one handler: its error is logged with the bot, the plugin and the event, and counted.
    func invoke(_ plugin: String, _ event: String, _ context: PluginContext, _ body: () async throws -> Void) async {
        let start = ContinuousClock.now
        do {
            try await body()
            statistics.handled(plugin: plugin, after: ContinuousClock.now - start)
        } catch is CancellationError {
            return
        } catch {
            statistics.failed(plugin: plugin, after: ContinuousClock.now - start)
            logger.error(
                "a handler failed: \(error)",
                metadata: [
                    "switchboard.plugin": "\(plugin)", "switchboard.event": "\(event)",
                    "switchboard.room": "\(context.roomId ?? "-")",
                ])
        }
    }

    /// Runs a plugin's `run`, restarting it with backoff when it throws, until cancelled.
    func supervise(_ entry: NamedPlugin) async {
        var backoff = RestartBackoff()
        let context = self.context(entry.name)
        while !Task.isCancelled {
            let start = ContinuousClock.now
            do {
                try await entry.plugin.run(context: context)
                return
            } catch {
                if Task.isCancelled { return }
                statistics.runFailed(plugin: entry.name)
                let delay = backoff.failed(after: ContinuousClock.now - start)
                logger.error(
                    "a plugin's run failed; restarting in \(delay): \(error)",
                    metadata: ["switchboard.plugin": "\(entry.name)", "switchboard.event": "run"])
                try? await Task.sleep(for: delay)
            }
        }
    }
}

/// What a bot did, for health checks and metrics: its totals here, per plugin in ``AgentMetrics``.
public final class BotStatistics: Sendable {
    private struct Counts {
        var handled = 0
        var failed = 0
        var seconds = 0.0
    }
    private let counts = Mutex(Counts())
    let client = Mutex<ChatClient?>(nil)
    let bot: String
    let metrics: AgentMetrics

    init(bot: String, plugins: [String], metrics: AgentMetrics) {
        self.bot = bot
        self.metrics = metrics
        metrics.register(bot: bot, plugins: plugins)
    }

    func handled(plugin: String, after duration: Duration) {
        record(plugin: plugin, duration, failed: false)
    }

    func failed(plugin: String, after duration: Duration) {
        record(plugin: plugin, duration, failed: true)
    }

    private func record(plugin: String, _ duration: Duration, failed: Bool) {
        counts.withLock {
            if failed { $0.failed += 1 } else { $0.handled += 1 }
            $0.seconds += Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        }
        metrics.handlerCall(bot: bot, plugin: plugin, duration: duration, failed: failed)
    }

    /// A plugin's `run` that crashed: an error, not a handler call.
    func runFailed(plugin: String) {
        counts.withLock { $0.failed += 1 }
        metrics.runFailed(bot: bot, plugin: plugin)
    }

    /// A snapshot.
    public var snapshot: BotSnapshot {
        let counts = counts.withLock { $0 }
        let client = client.withLock { $0 }
        return BotSnapshot(
            status: client?.status ?? .disconnected, eventsHandled: counts.handled, handlerErrors: counts.failed,
            handlerSeconds: counts.seconds, outboxLength: client?.pendingMessages.count ?? 0)
    }
}

/// A bot's figures at one moment.
public struct BotSnapshot: Sendable {
    /// The connection's status.
    public var status: ConnectionStatus
    /// Handler calls that returned.
    public var eventsHandled: Int
    /// Handler calls that threw (and plugin runs that crashed).
    public var handlerErrors: Int
    /// Time spent in handlers, in seconds.
    public var handlerSeconds: Double
    /// Messages waiting to be sent.
    public var outboxLength: Int
}
