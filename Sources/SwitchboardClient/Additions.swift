import SwitchboardProtocol

// The types of the protocol's 1.1 additions, as the client reads them. Every enumeration here
// tolerates values it does not know: a newer server may add some.

/// A member added to or removed from a room (the `member` event of protocol 1.1).
public struct MembershipChange: Codable, Sendable, Hashable {
    /// What happened to the member; other values may come from a newer server.
    public struct Kind: RawRepresentable, Codable, Sendable, Hashable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        /// The user became a member.
        public static let added = Kind(rawValue: "added")
        /// The user is no longer a member.
        public static let removed = Kind(rawValue: "removed")

        public init(from decoder: any Decoder) throws {
            rawValue = try decoder.singleValueContainer().decode(String.self)
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            try container.encode(rawValue)
        }

        public var description: String { rawValue }
    }

    /// The room.
    public var roomId: String
    /// The member.
    public var user: User
    /// Added or removed.
    public var change: Kind
    /// Who did it; `nil` when the server or an administrator did.
    public var by: String?

    /// A membership change.
    public init(roomId: String, user: User, change: Kind, by: String? = nil) {
        self.roomId = roomId
        self.user = user
        self.change = change
        self.by = by
    }
}


struct PublicRoomsAnswer: Codable, Sendable {
    var rooms: [Room]
}

/// The `data` of a `member` event.
struct MemberEventData: Codable, Sendable {
    var user: User
    var change: MembershipChange.Kind
    var by: String?
}

/// The ack of a `join`, with protocol 1.1's `online` (absent from a 1.0 server).
struct JoinAnswer: Codable, Sendable {
    var room: Room
    var lastSeq: Int
    var replayed: Int
    var truncated: Bool
    var online: [String]?
}

/// An `error` envelope read loosely: a code this library does not know must still settle its request.
struct LooseErrorEnvelope: Decodable {
    struct Body: Decodable {
        var code: String?
        var message: String?
    }
    var type: String
    var ref: String?
    var roomId: String?
    var data: Body?
}
