/// The `type` of an envelope. Known types are constants; others pass through as they are.
public struct EnvelopeType: OpenWireValue {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    /// Client: subscribe to a room. Server: a user's first connection subscribed to a room.
    public static let join: EnvelopeType = "join"
    /// Client: unsubscribe from a room. Server: a user's last connection left a room.
    public static let leave: EnvelopeType = "leave"
    /// A chat message.
    public static let message: EnvelopeType = "message"
    /// A typing indicator.
    public static let typing: EnvelopeType = "typing"
    /// A reaction added or removed.
    public static let reaction: EnvelopeType = "reaction"
    /// A user came online or went offline.
    public static let presence: EnvelopeType = "presence"
    /// A room the connection is not subscribed to changed.
    public static let room: EnvelopeType = "room"
    /// The success answer to a request carrying `ref`.
    public static let ack: EnvelopeType = "ack"
    /// The failure answer to a request.
    public static let error: EnvelopeType = "error"
    /// Application-level liveness check.
    public static let ping: EnvelopeType = "ping"
    /// The answer to `ping`.
    public static let pong: EnvelopeType = "pong"
    /// A member was added to or removed from a room (1.1).
    public static let member: EnvelopeType = "member"
}

/// One protocol frame: `{type, roomId?, data?, timestamp, userId?, ref?}`.
///
/// Generic over its `data`, so that each side encodes and decodes typed payloads without
/// building JSON by hand:
///
/// ```swift
/// let frame = Envelope(type: .typing, roomId: room, data: TypingData(isTyping: true))
/// let bytes = try Wire.encode(frame)
/// ```
public struct Envelope<Payload: Codable & Sendable>: Codable, Sendable {
    public var type: EnvelopeType
    public var roomId: String?
    public var data: Payload?
    /// Milliseconds since the Unix epoch; the server stamps it, and ignores the client's.
    public var timestamp: Int
    /// Who the event is about; the server stamps it, and ignores the client's.
    public var userId: String?
    /// The client's correlation id, echoed on the one `ack` or `error` that answers it.
    public var ref: String?

    public init(type: EnvelopeType, roomId: String? = nil, data: Payload? = nil, timestamp: Int = 0, userId: String? = nil, ref: String? = nil) {
        self.type = type
        self.roomId = roomId
        self.data = data
        self.timestamp = timestamp
        self.userId = userId
        self.ref = ref
    }

    private enum CodingKeys: String, CodingKey { case type, roomId, data, timestamp, userId, ref }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.type = try container.decode(EnvelopeType.self, forKey: .type)
        self.roomId = try container.decodeIfPresent(String.self, forKey: .roomId)
        self.data = try container.decodeIfPresent(Payload.self, forKey: .data)
        self.timestamp = (try? container.decodeIfPresent(Int.self, forKey: .timestamp)) ?? 0
        self.userId = try? container.decodeIfPresent(String.self, forKey: .userId)
        self.ref = try container.decodeIfPresent(String.self, forKey: .ref)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(type, forKey: .type)
        try container.encodeIfPresent(roomId, forKey: .roomId)
        try container.encodeIfPresent(data, forKey: .data)
        try container.encode(timestamp, forKey: .timestamp)
        try container.encodeIfPresent(userId, forKey: .userId)
        try container.encodeIfPresent(ref, forKey: .ref)
    }
}

/// An empty object, `{}`: the data of most acks.
public struct EmptyData: Codable, Sendable, Hashable {
    public init() {}
}

// MARK: Client to server

/// `join` data: subscribe, first replaying every message with `seq > since`.
public struct JoinData: Codable, Sendable, Hashable {
    public var since: Int?
    public init(since: Int? = nil) { self.since = since }
}

/// `message` data, and the body of `POST /api/rooms/{id}/messages`.
public struct SendMessageData: Codable, Sendable, Hashable {
    public var content: String
    /// Makes sending safe to repeat: the same user, room and `clientId` store one message.
    public var clientId: String?
    public var replyTo: String?
    public var meta: JSONValue?
    public init(content: String, clientId: String? = nil, replyTo: String? = nil, meta: JSONValue? = nil) {
        self.content = content
        self.clientId = clientId
        self.replyTo = replyTo
        self.meta = meta
    }
}

/// `typing` data, both ways.
public struct TypingData: Codable, Sendable, Hashable {
    public var isTyping: Bool
    public init(isTyping: Bool) { self.isTyping = isTyping }
}

/// Whether a reaction is added or removed.
///
/// Open: an action from a newer server decodes as itself (see ``OpenWireValue``); a server
/// accepts only the known ones from clients.
public struct ReactionAction: OpenWireValue {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    /// The reaction was added.
    public static let add: ReactionAction = "add"
    /// The reaction was removed.
    public static let remove: ReactionAction = "remove"
}

/// `reaction` data sent by a client.
public struct ReactionData: Codable, Sendable, Hashable {
    public var messageId: String
    public var reaction: String
    public var action: ReactionAction
    public init(messageId: String, reaction: String, action: ReactionAction) {
        self.messageId = messageId
        self.reaction = reaction
        self.action = action
    }
}

// MARK: Server to client

/// The `ack` of a `join`.
public struct JoinAck: Codable, Sendable, Hashable {
    public var room: Room
    /// Live messages after this ack have a higher `seq`.
    public var lastSeq: Int
    /// How many messages were replayed before this ack.
    public var replayed: Int
    /// More than the replay cap were missed: nothing was replayed; page `after=since` over HTTP.
    public var truncated: Bool
    /// The room's members online when the join completed (1.1; nil from an older server).
    public var online: [String]?
    public init(room: Room, lastSeq: Int, replayed: Int, truncated: Bool, online: [String]? = nil) {
        self.room = room
        self.lastSeq = lastSeq
        self.replayed = replayed
        self.truncated = truncated
        self.online = online
    }
}

/// The `ack` of a `message`, and the answer of `POST /api/rooms/{id}/messages`.
public struct MessageAck: Codable, Sendable, Hashable {
    public var message: Message
    /// True when the `clientId` was seen before: nothing new was stored.
    public var duplicate: Bool
    public init(message: Message, duplicate: Bool) {
        self.message = message
        self.duplicate = duplicate
    }
}

/// The `ack` of a `reaction`.
public struct ReactionAck: Codable, Sendable, Hashable {
    public var messageId: String
    public var reactions: [String: Int]
    public init(messageId: String, reactions: [String: Int]) {
        self.messageId = messageId
        self.reactions = reactions
    }
}

/// A `reaction` event: what changed and the new counts.
public struct ReactionEventData: Codable, Sendable, Hashable {
    public var messageId: String
    public var reaction: String
    public var action: ReactionAction
    public var reactions: [String: Int]
    public init(messageId: String, reaction: String, action: ReactionAction, reactions: [String: Int]) {
        self.messageId = messageId
        self.reaction = reaction
        self.action = action
        self.reactions = reactions
    }
}

/// Online or offline.
///
/// Open: a status from a newer server (say, "away") decodes as itself (see ``OpenWireValue``).
public struct PresenceStatus: OpenWireValue {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    /// The user's first connection opened.
    public static let online: PresenceStatus = "online"
    /// The user's last connection closed.
    public static let offline: PresenceStatus = "offline"
}

/// A `presence` event.
public struct PresenceData: Codable, Sendable, Hashable {
    public var status: PresenceStatus
    public init(status: PresenceStatus) { self.status = status }
}

/// A `join` or `leave` event from the server: the user who came or went.
public struct MemberData: Codable, Sendable, Hashable {
    public var user: User
    public init(user: User) { self.user = user }
}

/// Whether a `member` event adds or removes.
public enum MemberChange: String, Codable, Sendable, Hashable {
    case added
    case removed
}

/// A `member` event (1.1): a user added to or removed from a room, and by whom.
///
/// It reaches every connection subscribed to the room, the concerned user's included; a removed
/// user's connections get nothing more from that room after it.
public struct MemberChangeData: Codable, Sendable, Hashable {
    public var user: User
    public var change: MemberChange
    /// Who made the change; nil when the server or an administrator did.
    public var by: String?
    public init(user: User, change: MemberChange, by: String?) {
        self.user = user
        self.change = change
        self.by = by
    }
}

/// The answer of `GET /api/rooms/{id}/presence` (1.1): members online and members typing.
public struct RoomPresence: Codable, Sendable, Hashable {
    public var online: [String]
    public var typing: [String]
    public init(online: [String], typing: [String]) {
        self.online = online
        self.typing = typing
    }
}

/// A `room` event: sent to members not subscribed to the room when it changes.
public struct RoomEventData: Codable, Sendable, Hashable {
    public var room: Room
    public var lastMessage: Message?
    public init(room: Room, lastMessage: Message?) {
        self.room = room
        self.lastMessage = lastMessage
    }

    private enum CodingKeys: String, CodingKey { case room, lastMessage }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(room, forKey: .room)
        try container.encode(lastMessage, forKey: .lastMessage)
    }
}
