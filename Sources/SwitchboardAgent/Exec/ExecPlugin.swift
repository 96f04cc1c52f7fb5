import Logging
import SwitchboardClient
import SwitchboardProtocol

/// A plugin in any language: runs a program and speaks the exec protocol (JSON lines) with it.
///
/// Events of the bot go to the program; the program's actions are carried out as the bot, through
/// the plugin's context (so the bot's talk limit applies). The program is started when the bot
/// has connected, started again with backoff when it ends, and stopped with the bot.
///
/// ```yaml
/// plugins:
///   - plugin: exec
///     config: { command: [python3, Bots/python-example/bot.py] }
/// ```
public struct ExecPlugin: Plugin {
    /// How the agent knows the plugin: `exec`, configured by ``ExecConfiguration``.
    public static let factory = PluginFactory("exec", configuration: ExecConfiguration.self) { ExecPlugin(configuration: $0) }

    /// The program and how to keep it running.
    public let configuration: ExecConfiguration
    /// The program's supervisor: its process id, starts and dropped events.
    public let supervisor: ExecSupervisor

    /// A plugin running `configuration`'s program.
    public init(configuration: ExecConfiguration) {
        self.configuration = configuration
        self.supervisor = ExecSupervisor(configuration: configuration)
    }

    public func run(context: PluginContext) async throws {
        await supervisor.run(
            hello: .hello(plugin: context.pluginName, bot: context.bot, config: configuration.config), logger: context.logger
        ) { request in
            await request.perform(in: context)
        }
    }

    public func onMessage(_ message: IncomingMessage, context: PluginContext) async throws {
        supervisor.deliver(.message(message.message, sender: message.sender, text: message.text, mentioned: message.mentionsBot, direct: message.isDirect))
    }

    public func onTyping(_ typing: TypingEvent, context: PluginContext) async throws {
        supervisor.deliver(.typing(typing))
    }

    public func onPresence(_ presence: PresenceEvent, context: PluginContext) async throws {
        supervisor.deliver(.presence(presence))
    }

    public func onReaction(_ reaction: ReactionEvent, context: PluginContext) async throws {
        supervisor.deliver(.reaction(reaction))
    }

    public func onMemberAdded(_ change: MembershipChange, context: PluginContext) async throws {
        supervisor.deliver(.member(roomId: change.roomId, user: change.user, added: true, by: change.by))
    }

    public func onMemberRemoved(_ change: MembershipChange, context: PluginContext) async throws {
        supervisor.deliver(.member(roomId: change.roomId, user: change.user, added: false, by: change.by))
    }

    public func onJoin(_ visit: RoomVisit, context: PluginContext) async throws {
        supervisor.deliver(.visit(roomId: visit.roomId, user: visit.user, joined: true))
    }

    public func onLeave(_ visit: RoomVisit, context: PluginContext) async throws {
        supervisor.deliver(.visit(roomId: visit.roomId, user: visit.user, joined: false))
    }

    public func onRoom(_ room: Room, context: PluginContext) async throws {
        supervisor.deliver(.room(room))
    }
}

extension ExecRequest {
    /// Carries out the action as the context's bot; the outcome is what the program reads in its
    /// `result` line.
    func perform(in context: PluginContext) async -> ExecOutcome {
        do {
            switch self {
            case .send(_, let roomId, let content, let replyTo, let meta):
                let message = try await context.send(content, to: roomId, replyTo: replyTo, meta: meta)
                return .success(["message": JSONValue(encoding: message)])
            case .react(_, let roomId, let messageId, let reaction, let action):
                let counts = try await context.client.react(reaction, to: messageId, in: roomId, action: action)
                return .success(["reactions": .object(counts.mapValues { .integer(Int64($0)) })])
            case .typing(_, let roomId, let isTyping):
                return await context.client.sendTyping(isTyping, in: roomId)
                    ? .success([:]) : .failure(code: "unavailable", message: "typing needs the WebSocket, and the bot is not connected by one")
            case .hello, .log:
                return .success([:])
            }
        } catch let error as ClientError {
            return .failure(code: error.protocolError?.code.rawValue ?? error.code.description, message: error.message)
        } catch {
            return .failure(code: "internal", message: "\(error)")
        }
    }
}
