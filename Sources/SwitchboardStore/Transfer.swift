import SwitchboardProtocol

/// A store whose whole content can be copied out and into another, whatever the backend:
/// what `switchboard export` and `switchboard import` use to move a server from SQLite to
/// PostgreSQL (or back).
///
/// Export reads one table at a time, in pages ordered by the table's key, so that a million
/// messages move in bounded memory; import writes each page in one transaction.
///
/// ```swift
/// var last: TransferRecord?
/// repeat {
///     let page = try await source.exportPage(.messages, after: last, limit: 1_000)
///     try await destination.importRecords(page)
///     last = page.last
/// } while last != nil
/// ```
public protocol TransferableStore: ChatStore {
    /// Up to `limit` rows of `table` that come after `last` (a record of the same table from the
    /// previous page, nil for the first), in the table's key order. Empty past the end.
    func exportPage(_ table: TransferTable, after last: TransferRecord?, limit: Int) async throws -> [TransferRecord]
    /// How many rows each table holds, for progress.
    func transferCounts() async throws -> [TransferTable: Int]
    /// Stores records exactly as given (ids, `seq`s, hashes, markers), in one transaction, without
    /// the rules of the live writes. Referenced rows must already be stored: import tables in the
    /// order of ``TransferTable/allCases``.
    func importRecords(_ records: [TransferRecord]) async throws
}

/// The tables of a copy, in the order they must be imported (each refers only to earlier ones).
public enum TransferTable: String, Sendable, Hashable, Codable, CaseIterable {
    case users, tokens, rooms, members, messages, reactions
}

/// One row of a copy. As JSON, one object with a `type` and the row's fields.
public enum TransferRecord: Sendable, Hashable {
    case user(UserRow)
    case token(TokenRow)
    case room(RoomRow)
    case member(MemberRow)
    case message(Message)
    case reaction(ReactionRow)

    /// The table the record belongs to.
    public var table: TransferTable {
        switch self {
        case .user: .users
        case .token: .tokens
        case .room: .rooms
        case .member: .members
        case .message: .messages
        case .reaction: .reactions
        }
    }

    /// A user with the password hash the live API never hands out.
    public struct UserRow: Sendable, Hashable, Codable {
        public var id: String
        public var username: String
        public var displayName: String
        public var isBot: Bool
        public var passwordHash: String?
        public var createdAt: Int
        public init(id: String, username: String, displayName: String, isBot: Bool, passwordHash: String?, createdAt: Int) {
            self.id = id
            self.username = username
            self.displayName = displayName
            self.isBot = isBot
            self.passwordHash = passwordHash
            self.createdAt = createdAt
        }
    }

    /// A token with its hash (hex), so that tokens in use keep working after a move.
    public struct TokenRow: Sendable, Hashable, Codable {
        public var record: TokenRecord
        public var hash: [UInt8]
        public init(record: TokenRecord, hash: [UInt8]) {
            self.record = record
            self.hash = hash
        }

        enum CodingKeys: String, CodingKey { case record, hash }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            record = try container.decode(TokenRecord.self, forKey: .record)
            let hex = try container.decode(String.self, forKey: .hash)
            guard let bytes = Self.bytes(hex: hex) else {
                throw DecodingError.dataCorruptedError(forKey: .hash, in: container, debugDescription: "not hexadecimal")
            }
            hash = bytes
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(record, forKey: .record)
            try container.encode(hash.map { String($0, radix: 16).leftPadded(to: 2) }.joined(), forKey: .hash)
        }

        private static func bytes(hex: String) -> [UInt8]? {
            let digits = Array(hex.utf8)
            guard digits.count % 2 == 0 else { return nil }
            var bytes: [UInt8] = []
            bytes.reserveCapacity(digits.count / 2)
            for index in stride(from: 0, to: digits.count, by: 2) {
                guard let byte = UInt8(String(decoding: digits[index...index + 1], as: UTF8.self), radix: 16) else { return nil }
                bytes.append(byte)
            }
            return bytes
        }
    }

    /// A room as stored: with who made it and, for a direct room, the key of its two members.
    public struct RoomRow: Sendable, Hashable, Codable {
        public var id: String
        public var name: String
        public var kind: RoomKind
        public var isPublic: Bool
        public var creatorId: String?
        public var directKey: String?
        public var createdAt: Int
        public var lastSeq: Int
        public init(
            id: String, name: String, kind: RoomKind, isPublic: Bool, creatorId: String?, directKey: String?, createdAt: Int, lastSeq: Int
        ) {
            self.id = id
            self.name = name
            self.kind = kind
            self.isPublic = isPublic
            self.creatorId = creatorId
            self.directKey = directKey
            self.createdAt = createdAt
            self.lastSeq = lastSeq
        }
    }

    /// A member and their read marker.
    public struct MemberRow: Sendable, Hashable, Codable {
        public var roomId: String
        public var userId: String
        public var joinedAt: Int
        public var readSeq: Int
        public init(roomId: String, userId: String, joinedAt: Int, readSeq: Int) {
            self.roomId = roomId
            self.userId = userId
            self.joinedAt = joinedAt
            self.readSeq = readSeq
        }
    }

    /// One user's reaction to one message.
    public struct ReactionRow: Sendable, Hashable, Codable {
        public var messageId: String
        public var reaction: String
        public var userId: String
        public var createdAt: Int
        public init(messageId: String, reaction: String, userId: String, createdAt: Int) {
            self.messageId = messageId
            self.reaction = reaction
            self.userId = userId
            self.createdAt = createdAt
        }
    }
}

extension TransferRecord: Codable {
    private enum TypeKey: String, CodingKey { case type }

    public init(from decoder: any Decoder) throws {
        let type = try decoder.container(keyedBy: TypeKey.self).decode(String.self, forKey: .type)
        switch type {
        case "user": self = .user(try UserRow(from: decoder))
        case "token": self = .token(try TokenRow(from: decoder))
        case "room": self = .room(try RoomRow(from: decoder))
        case "member": self = .member(try MemberRow(from: decoder))
        case "message": self = .message(try Message(from: decoder))
        case "reaction": self = .reaction(try ReactionRow(from: decoder))
        default:
            throw DecodingError.dataCorruptedError(
                forKey: .type, in: try decoder.container(keyedBy: TypeKey.self), debugDescription: "unknown record type \(type)")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: TypeKey.self)
        switch self {
        case .user(let row):
            try container.encode("user", forKey: .type)
            try row.encode(to: encoder)
        case .token(let row):
            try container.encode("token", forKey: .type)
            try row.encode(to: encoder)
        case .room(let row):
            try container.encode("room", forKey: .type)
            try row.encode(to: encoder)
        case .member(let row):
            try container.encode("member", forKey: .type)
            try row.encode(to: encoder)
        case .message(let message):
            try container.encode("message", forKey: .type)
            try message.encode(to: encoder)
        case .reaction(let row):
            try container.encode("reaction", forKey: .type)
            try row.encode(to: encoder)
        }
    }
}

extension String {
    fileprivate func leftPadded(to length: Int) -> String {
        count >= length ? self : String(repeating: "0", count: length - count) + self
    }
}
