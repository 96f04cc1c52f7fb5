import Logging
import SwitchboardAgent
import Synchronization

/// The IRC bridge as an agent plugin: name it `irc` in a bot's plugins, with its networks in `config`.
///
/// ```swift
/// let agent = Agent(configuration: configuration, plugins: [IRCBridgePlugin.factory], …)
/// ```
///
/// Chat messages in mapped rooms go to IRC (`/me` as ACTION, long ones split, many lines cut with a
/// note); IRC messages come to the room from the bot with `meta.bridge = {network, channel, nick}`,
/// through the client's outbox. Nothing loops: the bot's own messages never reach a plugin, and
/// messages a bridge of the same network relayed are skipped.
public struct IRCBridgePlugin: Plugin {
    /// The factory that makes the plugin from its YAML `config`.
    public static let factory = PluginFactory("irc", configuration: IRCBridgeConfiguration.self) { IRCBridgePlugin(configuration: $0) }

    public var name: String { "irc" }

    /// The relays, one per network: they outlive a chat reconnection, and so do their queues.
    public let relays: [NetworkRelay]
    private let chat: ChatHolder

    /// A bridge; it connects when the agent runs it.
    public init(configuration: IRCBridgeConfiguration, logger: Logger = Logger(label: "switchboard.irc")) {
        let chat = ChatHolder(logger: logger)
        self.chat = chat
        self.relays = configuration.networks.map { network in
            var logger = logger
            logger[metadataKey: "irc.network"] = "\(network.name)"
            return NetworkRelay(network: network, logger: logger) { post in await chat.post(post) }
        }
    }

    public func setUp(context: PluginContext) async throws {
        chat.set(context.client)
    }

    public func run(context: PluginContext) async throws {
        chat.set(context.client)
        for summary in try await context.client.rooms() {
            for relay in relays { relay.resolve(roomId: summary.room.id, name: summary.room.name) }
        }
        try await withThrowingDiscardingTaskGroup { group in
            for relay in relays { group.addTask { try await relay.run() } }
        }
    }

    public func onRoom(_ room: Room, context: PluginContext) async throws {
        for relay in relays { relay.resolve(roomId: room.id, name: room.name) }
    }

    public func onMessage(_ message: IncomingMessage, context: PluginContext) async throws {
        guard message.userId != context.bot.id else { return }
        let relayed = ChatMessageToRelay(
            roomId: message.roomId,
            roomName: message.room.name,
            senderName: message.sender?.username ?? message.userId,
            senderId: message.userId,
            content: message.content,
            meta: message.message.meta,
            quote: relays.contains { $0.channel(for: message.roomId) != nil } ? await ReplyQuote.lookUp(for: message.message, client: context.client) : nil
        )
        for relay in relays { try await relay.relayToIRC(relayed) }
    }

    public func onReaction(_ reaction: ReactionEvent, context: PluginContext) async throws {
        guard reaction.userId != context.bot.id else { return }
        let name = (try? await context.user(id: reaction.userId).username) ?? reaction.userId
        for relay in relays {
            try await relay.relayReaction(reaction.reaction, by: name, roomId: reaction.roomId, action: reaction.action.rawValue)
        }
    }
}

/// The chat client of the bot's current connection, for posting what IRC says.
final class ChatHolder: Sendable {
    private let client = Mutex<ChatClient?>(nil)
    private let logger: Logger

    init(logger: Logger) { self.logger = logger }

    func set(_ client: ChatClient) { self.client.withLock { $0 = client } }

    /// Queues a post in the client's outbox; waits while there is no client or the outbox is full,
    /// so that nothing is dropped (but what chat refuses as invalid: see `ChatPost.enqueue`).
    func post(_ post: ChatPost) async {
        while !Task.isCancelled {
            // Without a client, or shutting down: a new one comes with the next session.
            if let client = client.withLock({ $0 }), post.enqueue(in: client, logger: logger) { return }
            try? await Task.sleep(for: .milliseconds(50))
        }
    }
}
