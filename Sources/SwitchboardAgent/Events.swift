import SwitchboardClient
import SwitchboardProtocol

/// A message as a plugin sees it: the stored message, its room and author, and what the agent
/// found in it.
public struct IncomingMessage: Sendable {
    /// The message as the server stored it.
    public var message: Message
    /// The room it was sent to.
    public var room: Room
    /// Its author, when the agent knows them (it looks every author up once and keeps them).
    public var sender: User?
    /// Whether it was sent in a direct room of the bot.
    public var isDirect: Bool { room.kind == .direct }
    /// Whether it names the bot: `@name` anywhere, or `name:` / `name,` at the start.
    public var mentionsBot: Bool
    /// The text without a leading `@name`, `name:` or `name,` addressing the bot, trimmed.
    public var text: String

    /// The message's text, as stored.
    public var content: String { message.content }
    /// The author's id.
    public var userId: String { message.userId }
    /// The room's id.
    public var roomId: String { message.roomId }

    /// A message, usually made by the agent.
    public init(message: Message, room: Room, sender: User?, mentionsBot: Bool, text: String) {
        self.message = message
        self.room = room
        self.sender = sender
        self.mentionsBot = mentionsBot
        self.text = text
    }
}

/// A user who opened (their first connection subscribed to) or left (their last one closed) a room.
public struct RoomVisit: Sendable, Hashable {
    /// The room.
    public var roomId: String
    /// Who.
    public var user: User

    /// A visit.
    public init(roomId: String, user: User) {
        self.roomId = roomId
        self.user = user
    }
}

/// What reaches a bot, as middleware sees it before the handlers.
public enum AgentEvent: Sendable {
    /// A message (its commands and patterns are found after middleware let it through).
    case message(IncomingMessage)
    /// A command, parsed, about to run.
    case command(CommandCall)
    /// Typing.
    case typing(TypingEvent)
    /// Presence.
    case presence(PresenceEvent)
    /// A reaction.
    case reaction(ReactionEvent)
    /// A member added.
    case memberAdded(MembershipChange)
    /// A member removed.
    case memberRemoved(MembershipChange)
    /// Someone opened a room.
    case join(RoomVisit)
    /// Someone left a room.
    case leave(RoomVisit)
    /// The bot follows a new room.
    case room(Room)
    /// A schedule came due.
    case schedule(ScheduledJob)

    /// The room the event happened in, if any.
    public var roomId: String? {
        switch self {
        case .message(let message): message.roomId
        case .command(let call): call.message.roomId
        case .typing(let typing): typing.roomId
        case .presence: nil
        case .reaction(let reaction): reaction.roomId
        case .memberAdded(let change), .memberRemoved(let change): change.roomId
        case .join(let visit), .leave(let visit): visit.roomId
        case .room(let room): room.id
        case .schedule: nil
        }
    }

    /// Who caused the event, if anyone.
    public var userId: String? {
        switch self {
        case .message(let message): message.userId
        case .command(let call): call.message.userId
        case .typing(let typing): typing.userId
        case .presence(let presence): presence.userId
        case .reaction(let reaction): reaction.userId
        case .memberAdded(let change), .memberRemoved(let change): change.by ?? change.user.id
        case .join(let visit), .leave(let visit): visit.user.id
        case .room, .schedule: nil
        }
    }

    /// A short name for logs: `message`, `command:roll`, `typing` …
    public var kind: String {
        switch self {
        case .message: "message"
        case .command(let call): "command:\(call.command.name)"
        case .typing: "typing"
        case .presence: "presence"
        case .reaction: "reaction"
        case .memberAdded: "memberAdded"
        case .memberRemoved: "memberRemoved"
        case .join: "join"
        case .leave: "leave"
        case .room: "room"
        case .schedule(let job): "schedule:\(job.id)"
        }
    }
}
