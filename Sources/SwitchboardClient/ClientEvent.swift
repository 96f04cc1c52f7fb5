import SwitchboardProtocol

/// Something that happened, as the application sees it.
///
/// Messages come once each, in `seq` order per room, with no gap, whatever happened to the
/// connection in between. Typing, reactions and presence are live only: what happened while
/// offline is not replayed.
///
/// ```swift
/// for await event in client.events() {
///     switch event {
///     case .message(let message): print("\(message.userId): \(message.content)")
///     case .typing(let typing) where typing.isTyping: print("\(typing.userId) is typing")
///     case .status(let status): print("status: \(status)")
///     default: break
///     }
/// }
/// ```
public enum ClientEvent: Sendable {
    /// A message in a subscribed room.
    case message(Message)
    /// Someone else started or stopped typing in a subscribed room.
    case typing(TypingEvent)
    /// A reaction was added or removed in a subscribed room.
    case reaction(ReactionEvent)
    /// Someone who shares a room with this user came online or went offline.
    case presence(PresenceEvent)
    /// Someone else's first connection subscribed to a subscribed room.
    case memberJoined(roomId: String, user: User)
    /// Someone else's last connection left a subscribed room.
    case memberLeft(roomId: String, user: User)
    /// A room of this user that the client is not subscribed to changed or got a message. When following
    /// every room (``ChatClient/followAllRooms()``), a room new to the client is followed from then on.
    case room(RoomEventData)
    /// A member was added to or removed from a subscribed room (protocol 1.1). When the member removed is
    /// this user, the subscription ends with it: ``subscriptionEnded(roomId:_:)`` follows.
    case member(MembershipChange)
    /// Everything the room held up to the newest `seq` of its last (re)join was handed over: replayed,
    /// read from history, or live. `seq` is the last one handed over.
    case caughtUp(roomId: String, seq: Int)
    /// Every followed room has caught up since the connection opened (once per connection). With
    /// ``ChatClient/followAllRooms()``, the user's rooms were listed first.
    case ready
    /// The connection status changed.
    case status(ConnectionStatus)
    /// A message from the outbox was stored by the server (also for messages restored from the outbox file).
    case messageSent(Message)
    /// A message from the outbox was refused for good and dropped (also for restored ones).
    case messageRejected(PendingMessage, ClientError)
    /// A subscription ended because the server refused to join the room (the user was removed, the
    /// room is gone): the room's streams get nothing more until ``ChatClient/subscribe(to:after:)`` again.
    case subscriptionEnded(roomId: String, ClientError)
    /// Messages of a room could not be recovered and were skipped (the server no longer has them).
    case gap(roomId: String, seqs: ClosedRange<Int>)
    /// An envelope of a type this library does not know: a newer server's extension.
    case unknown(Envelope<JSONValue>)

    /// The room the event is about, when it is about one.
    public var roomId: String? {
        switch self {
        case .message(let message): message.roomId
        case .typing(let typing): typing.roomId
        case .reaction(let reaction): reaction.roomId
        case .memberJoined(let roomId, _), .memberLeft(let roomId, _): roomId
        case .room(let data): data.room.id
        case .member(let change): change.roomId
        case .caughtUp(let roomId, _): roomId
        case .messageSent(let message): message.roomId
        case .messageRejected(let pending, _): pending.roomId
        case .gap(let roomId, _), .subscriptionEnded(let roomId, _): roomId
        case .unknown(let envelope): envelope.roomId
        case .presence, .status, .ready: nil
        }
    }
}

/// Someone started or stopped typing.
public struct TypingEvent: Sendable, Hashable {
    /// The room.
    public var roomId: String
    /// Who types.
    public var userId: String
    /// Whether they are typing now; the server sends `false` by itself a few seconds after the last `true`.
    public var isTyping: Bool

    /// A typing event.
    public init(roomId: String, userId: String, isTyping: Bool) {
        self.roomId = roomId
        self.userId = userId
        self.isTyping = isTyping
    }
}

/// A reaction added or removed, with the message's new counts.
public struct ReactionEvent: Sendable, Hashable {
    /// The room.
    public var roomId: String
    /// Who reacted.
    public var userId: String
    /// The message reacted to.
    public var messageId: String
    /// The reaction, such as `👍`.
    public var reaction: String
    /// Added or removed.
    public var action: ReactionAction
    /// The message's counts after the change.
    public var reactions: [String: Int]

    /// A reaction event.
    public init(roomId: String, userId: String, messageId: String, reaction: String, action: ReactionAction, reactions: [String: Int]) {
        self.roomId = roomId
        self.userId = userId
        self.messageId = messageId
        self.reaction = reaction
        self.action = action
        self.reactions = reactions
    }
}

/// Someone came online or went offline.
public struct PresenceEvent: Sendable, Hashable {
    /// Who.
    public var userId: String
    /// Online or offline.
    public var status: PresenceStatus

    /// A presence event.
    public init(userId: String, status: PresenceStatus) {
        self.userId = userId
        self.status = status
    }
}

/// What ``ChatClient/disconnect()`` could not send.
public struct DisconnectReport: Sendable {
    /// Messages still in the outbox when the client stopped. With an outbox file they stay in it,
    /// and the next client with the same file sends them.
    public var unsent: [PendingMessage]
    /// Whether ``unsent`` is kept in the outbox file.
    public var keptInFile: Bool

    /// Whether everything queued was sent.
    public var isClean: Bool { unsent.isEmpty }
}
