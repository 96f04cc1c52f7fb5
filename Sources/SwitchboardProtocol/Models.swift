/// A person or a bot with an account on the server.
public struct User: Codable, Sendable, Hashable, Identifiable {
    /// Opaque, stable id.
    public var id: String
    /// Unique login name (1 to 32 of `A–Z a–z 0–9 . _ -`, unique without regard to case).
    public var username: String
    /// The name shown to people; the username unless set.
    public var displayName: String
    /// Whether the account is a bot.
    public var isBot: Bool

    public init(id: String, username: String, displayName: String, isBot: Bool) {
        self.id = id
        self.username = username
        self.displayName = displayName
        self.isBot = isBot
    }
}

/// Whether a room is a group room or the direct room of two users.
///
/// Open: a kind from a newer server decodes as itself (see ``OpenWireValue``).
public struct RoomKind: OpenWireValue {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    /// A room of any number of members, public or private.
    public static let group: RoomKind = "group"
    /// The room of exactly two users.
    public static let direct: RoomKind = "direct"
}

/// A room: a group conversation or a direct conversation between two users.
public struct Room: Codable, Sendable, Hashable, Identifiable {
    /// Opaque, stable id.
    public var id: String
    /// Display name (1 to 100 characters).
    public var name: String
    /// Group or direct.
    public var kind: RoomKind
    /// Whether anyone may read it and join it.
    public var isPublic: Bool
    /// Creation time, milliseconds since the Unix epoch.
    public var createdAt: Int
    /// The `seq` of the newest message, 0 when there is none.
    public var lastSeq: Int
    /// The ids of the members.
    public var members: [String]

    public init(id: String, name: String, kind: RoomKind, isPublic: Bool, createdAt: Int, lastSeq: Int, members: [String]) {
        self.id = id
        self.name = name
        self.kind = kind
        self.isPublic = isPublic
        self.createdAt = createdAt
        self.lastSeq = lastSeq
        self.members = members
    }
}

/// A stored chat message.
public struct Message: Codable, Sendable, Hashable, Identifiable {
    /// Opaque, stable id.
    public var id: String
    /// The room it belongs to.
    public var roomId: String
    /// Its position in the room: 1, 2, 3 … with no gaps and no repeats.
    public var seq: Int
    /// The author.
    public var userId: String
    /// The text, trimmed of white space at both ends.
    public var content: String
    /// When the server stored it, milliseconds since the Unix epoch.
    public var createdAt: Int
    /// The sender's idempotency key, when one was given.
    public var clientId: String?
    /// The id of the message this one answers.
    public var replyTo: String?
    /// Up to 1 KiB of JSON that the server stores and relays untouched.
    public var meta: JSONValue?
    /// When it was last edited.
    public var editedAt: Int?
    /// Whether it was deleted.
    public var deleted: Bool
    /// Reaction counts by reaction.
    public var reactions: [String: Int]

    public init(
        id: String, roomId: String, seq: Int, userId: String, content: String, createdAt: Int,
        clientId: String? = nil, replyTo: String? = nil, meta: JSONValue? = nil, editedAt: Int? = nil,
        deleted: Bool = false, reactions: [String: Int] = [:]
    ) {
        self.id = id
        self.roomId = roomId
        self.seq = seq
        self.userId = userId
        self.content = content
        self.createdAt = createdAt
        self.clientId = clientId
        self.replyTo = replyTo
        self.meta = meta
        self.editedAt = editedAt
        self.deleted = deleted
        self.reactions = reactions
    }

    private enum CodingKeys: String, CodingKey {
        case id, roomId, seq, userId, content, createdAt, clientId, replyTo, meta, editedAt, deleted, reactions
    }

    /// Decodes a message; absent optional fields, `deleted` and `reactions` take their defaults.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.id = try container.decode(String.self, forKey: .id)
        self.roomId = try container.decode(String.self, forKey: .roomId)
        self.seq = try container.decode(Int.self, forKey: .seq)
        self.userId = try container.decode(String.self, forKey: .userId)
        self.content = try container.decode(String.self, forKey: .content)
        self.createdAt = try container.decode(Int.self, forKey: .createdAt)
        self.clientId = try container.decodeIfPresent(String.self, forKey: .clientId)
        self.replyTo = try container.decodeIfPresent(String.self, forKey: .replyTo)
        let meta = try container.decodeIfPresent(JSONValue.self, forKey: .meta)
        self.meta = meta == .null ? nil : meta
        self.editedAt = try container.decodeIfPresent(Int.self, forKey: .editedAt)
        self.deleted = try container.decodeIfPresent(Bool.self, forKey: .deleted) ?? false
        self.reactions = try container.decodeIfPresent([String: Int].self, forKey: .reactions) ?? [:]
    }

    /// Encodes every field of the contract, absent ones as `null`, so that clients see one shape.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(roomId, forKey: .roomId)
        try container.encode(seq, forKey: .seq)
        try container.encode(userId, forKey: .userId)
        try container.encode(content, forKey: .content)
        try container.encode(createdAt, forKey: .createdAt)
        try container.encode(clientId, forKey: .clientId)
        try container.encode(replyTo, forKey: .replyTo)
        try container.encode(meta, forKey: .meta)
        try container.encode(editedAt, forKey: .editedAt)
        try container.encode(deleted, forKey: .deleted)
        try container.encode(reactions, forKey: .reactions)
    }
}

/// A room as listed by `GET /api/rooms`: the room, its newest message and the caller's unread count.
public struct RoomSummary: Codable, Sendable, Hashable {
    public var room: Room
    public var lastMessage: Message?
    public var unread: Int

    public init(room: Room, lastMessage: Message?, unread: Int) {
        self.room = room
        self.lastMessage = lastMessage
        self.unread = unread
    }

    private enum CodingKeys: String, CodingKey { case lastMessage, unread }

    /// Decodes the room's fields and the two extra ones from one object.
    public init(from decoder: any Decoder) throws {
        self.room = try Room(from: decoder)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.lastMessage = try container.decodeIfPresent(Message.self, forKey: .lastMessage)
        self.unread = try container.decode(Int.self, forKey: .unread)
    }

    /// Encodes `room + {lastMessage, unread}` as one flat object, as the contract says.
    public func encode(to encoder: any Encoder) throws {
        try room.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(lastMessage, forKey: .lastMessage)
        try container.encode(unread, forKey: .unread)
    }
}
