import SwitchboardClient
import SwitchboardProtocol

/// Incoming webhooks: listens on an HTTP port and posts what it receives into rooms, as the bot.
///
/// See ``WebhookConfiguration`` for the configuration and ``WebhookListener`` for the answers.
/// A hook's `room` is a room id, or the name of one of the bot's rooms.
public struct WebhooksPlugin: Plugin {
    /// How the agent knows the plugin: `webhooks`, configured by ``WebhookConfiguration``.
    public static let factory = PluginFactory("webhooks", configuration: WebhookConfiguration.self) { WebhooksPlugin(configuration: $0) }

    /// The hooks and where to listen.
    public let configuration: WebhookConfiguration
    private let onListening: @Sendable (Int) async -> Void

    /// A plugin serving `configuration`'s hooks.
    ///
    /// - Parameter onListening: called with the port once it accepts connections (useful with port 0).
    public init(configuration: WebhookConfiguration, onListening: @escaping @Sendable (Int) async -> Void = { _ in }) {
        self.configuration = configuration
        self.onListening = onListening
    }

    public func run(context: PluginContext) async throws {
        let listener = WebhookListener(configuration: configuration, logger: context.logger) { hook, text in
            try await context.send(text, to: try await Self.roomId(hook.room, context: context))
        }
        try await listener.run(onListening: onListening)
    }

    /// `room` itself when it is the id of one of the bot's rooms, else the id of the bot's room of that name.
    static func roomId(_ room: String, context: PluginContext) async throws -> String {
        let rooms = try await context.client.rooms()
        if rooms.contains(where: { $0.room.id == room }) { return room }
        guard let named = rooms.first(where: { $0.room.name == room }) else {
            throw ClientError(.notFound, "the bot is in no room with the id or name \(room); add it as a member")
        }
        return named.room.id
    }
}
