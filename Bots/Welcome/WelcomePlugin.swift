import Foundation
import SwitchboardAgent

/// Greets a person the first time they join a room: `Welcome to {room}, {name}!`.
public struct WelcomePlugin: Plugin {
    /// What a configuration may change.
    public struct Configuration: Decodable, Sendable {
        /// The greeting; `{name}` is the person's display name, `{room}` the room's name.
        public var text: String?
    }

    let text: String

    /// A greeter with `text`.
    public init(text: String = "Welcome to {room}, {name}! Say !help to see what I can do.") {
        self.text = text
    }

    public var name: String { "welcome" }

    public func onMemberAdded(_ change: MembershipChange, context: PluginContext) async throws {
        try await greet(change.user, in: change.roomId, context: context)
    }

    public func onJoin(_ visit: RoomVisit, context: PluginContext) async throws {
        try await greet(visit.user, in: visit.roomId, context: context)
    }

    func greet(_ user: User, in roomId: String, context: PluginContext) async throws {
        guard !user.isBot, user.id != context.bot.id else { return }
        let key = "greeted:\(roomId):\(user.id)"
        guard try await context.storage.get(key, as: Bool.self) == nil else { return }
        try await context.storage.set(key, true)
        let room = try await context.room(roomId)
        guard room.kind == .group else { return }
        let greeting = text.replacingOccurrences(of: "{name}", with: user.displayName).replacingOccurrences(of: "{room}", with: room.name)
        try await context.send(greeting, to: roomId)
    }

    /// `welcome` in an agent's configuration, with `text`.
    public static let factory = PluginFactory("welcome", configuration: Configuration.self) { configuration in
        if let text = configuration.text, text.trimmingCharacters(in: .whitespaces).isEmpty {
            throw ConfigurationError(code: .invalid, "welcome: text is empty; write a greeting or leave it out")
        }
        return configuration.text.map { WelcomePlugin(text: $0) } ?? WelcomePlugin()
    }
}
