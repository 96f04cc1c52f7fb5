import NIOCore
import PostgresNIO
import SwitchboardProtocol
import SwitchboardStore

extension PostgresStore: TransferableStore {
    /// A page of one table, after `last` in the table's key order. Pages are separate reads: copy
    /// a database whose servers are stopped. Keys are compared and sorted byte by byte (`COLLATE
    /// "C"`) in both the condition and the order: ids mix cases, which a database's own collation
    /// (say `en_US`) sorts otherwise, and a page must start where the last one ended.
    public func exportPage(_ table: TransferTable, after last: TransferRecord?, limit: Int) async throws -> [TransferRecord] {
        let limit = max(limit, 0)
        return try await read { connection in
            switch table {
            case .users:
                let after: String = if case .user(let row)? = last { row.id } else { "" }
                return try await connection.rows(
                    """
                    SELECT id, username, display_name, is_bot, password_hash, created_at FROM users
                    WHERE id COLLATE "C" > \(after) ORDER BY id COLLATE "C" LIMIT \(limit)
                    """, logger: logger
                ).map { row in
                    .user(
                        .init(
                            id: try row["id"].decode(String.self), username: try row["username"].decode(String.self),
                            displayName: try row["display_name"].decode(String.self), isBot: try row["is_bot"].decode(Bool.self),
                            passwordHash: try row["password_hash"].decode(String?.self), createdAt: try row["created_at"].decode(Int.self)))
                }
            case .tokens:
                let after: String = if case .token(let row)? = last { row.record.id } else { "" }
                return try await connection.rows(
                    """
                    SELECT \(unescaped: Columns.token("t")), t.hash AS hash FROM tokens t
                    WHERE t.id COLLATE "C" > \(after) ORDER BY t.id COLLATE "C" LIMIT \(limit)
                    """, logger: logger
                ).map { row in .token(.init(record: try Decode.token(row), hash: Array(buffer: try row["hash"].decode(ByteBuffer.self)))) }
            case .rooms:
                let after: String = if case .room(let row)? = last { row.id } else { "" }
                return try await connection.rows(
                    """
                    SELECT id, name, kind, is_public, creator_id, direct_key, created_at, last_seq FROM rooms
                    WHERE id COLLATE "C" > \(after) ORDER BY id COLLATE "C" LIMIT \(limit)
                    """, logger: logger
                ).map { row in
                    let kindName = try row["kind"].decode(String.self)
                    let kind = RoomKind(rawValue: kindName)
                    guard kind == .group || kind == .direct else { throw StoreError(.unavailable, "unknown room kind \(kindName)") }
                    return .room(
                        .init(
                            id: try row["id"].decode(String.self), name: try row["name"].decode(String.self), kind: kind,
                            isPublic: try row["is_public"].decode(Bool.self), creatorId: try row["creator_id"].decode(String?.self),
                            directKey: try row["direct_key"].decode(String?.self), createdAt: try row["created_at"].decode(Int.self),
                            lastSeq: try row["last_seq"].decode(Int.self)))
                }
            case .members:
                let (room, user): (String, String) = if case .member(let row)? = last { (row.roomId, row.userId) } else { ("", "") }
                return try await connection.rows(
                    """
                    SELECT room_id, user_id, joined_at, read_seq FROM members
                    WHERE (room_id COLLATE "C", user_id COLLATE "C") > (\(room), \(user))
                    ORDER BY room_id COLLATE "C", user_id COLLATE "C" LIMIT \(limit)
                    """, logger: logger
                ).map { row in
                    .member(
                        .init(
                            roomId: try row["room_id"].decode(String.self), userId: try row["user_id"].decode(String.self),
                            joinedAt: try row["joined_at"].decode(Int.self), readSeq: try row["read_seq"].decode(Int.self)))
                }
            case .messages:
                let (room, seq): (String, Int) = if case .message(let message)? = last { (message.roomId, message.seq) } else { ("", 0) }
                return try await connection.rows(
                    """
                    SELECT \(unescaped: Columns.message("m")) FROM messages m
                    WHERE (m.room_id COLLATE "C", m.seq) > (\(room), \(seq)) ORDER BY m.room_id COLLATE "C", m.seq LIMIT \(limit)
                    """, logger: logger
                ).map { .message(try Decode.message($0)) }
            case .reactions:
                let (message, reaction, user): (String, String, String) =
                    if case .reaction(let row)? = last { (row.messageId, row.reaction, row.userId) } else { ("", "", "") }
                return try await connection.rows(
                    """
                    SELECT message_id, reaction, user_id, created_at FROM reactions
                    WHERE (message_id COLLATE "C", reaction COLLATE "C", user_id COLLATE "C") > (\(message), \(reaction), \(user))
                    ORDER BY message_id COLLATE "C", reaction COLLATE "C", user_id COLLATE "C" LIMIT \(limit)
                    """, logger: logger
                ).map { row in
                    .reaction(
                        .init(
                            messageId: try row["message_id"].decode(String.self), reaction: try row["reaction"].decode(String.self),
                            userId: try row["user_id"].decode(String.self), createdAt: try row["created_at"].decode(Int.self)))
                }
            }
        }
    }

    /// Rows per table.
    public func transferCounts() async throws -> [TransferTable: Int] {
        try await read { connection in
            var counts: [TransferTable: Int] = [:]
            for table in TransferTable.allCases {
                // Table names come from the enum, not from users.
                counts[table] = try await connection.rows("SELECT count(*) AS n FROM \(unescaped: table.rawValue)", logger: logger)
                    .first?["n"].decode(Int.self) ?? 0
            }
            return counts
        }
    }

    /// Stores the records as given, in one transaction: each run of records of one table as
    /// multi-row INSERTs, as many rows per statement as the bind limit allows.
    public func importRecords(_ records: [TransferRecord]) async throws {
        let rows = try records.map(Self.row)
        try await write { connection in
            var start = 0
            while start < rows.count {
                let table = rows[start].table
                let end = rows[start...].firstIndex { $0.table != table } ?? rows.count
                let columns = rows[start].columns
                for chunk in Array(rows[start..<end]).chunks(ofCount: maxBinds / columns.count) {
                    var binds = PostgresBindings(capacity: chunk.count * columns.count)
                    var placeholders: [String] = []
                    for (index, row) in chunk.enumerated() {
                        let first = index * columns.count
                        placeholders.append("(" + (1...columns.count).map { "$\(first + $0)" }.joined(separator: ", ") + ")")
                        for value in row.values {
                            if let value { try binds.append(value) } else { binds.appendNull() }
                        }
                    }
                    try await connection.query(
                        PostgresQuery(
                            unsafeSQL: "INSERT INTO \(table) (\(columns.joined(separator: ", "))) VALUES \(placeholders.joined(separator: ", "))",
                            binds: binds), logger: logger)
                }
                start = end
            }
        }
    }

    private typealias Value = (any PostgresThrowingDynamicTypeEncodable)?

    /// The table, columns and values that store `record`.
    private static func row(_ record: TransferRecord) throws -> (table: String, columns: [String], values: [Value]) {
        switch record {
        case .user(let user):
            return (
                "users", ["id", "username", "username_key", "display_name", "display_name_key", "is_bot", "password_hash", "created_at"],
                [
                    user.id, user.username, caseKey(user.username), user.displayName, caseKey(user.displayName), user.isBot, user.passwordHash,
                    user.createdAt,
                ]
            )
        case .token(let token):
            let record = token.record
            return (
                "tokens", ["id", "user_id", "hash", "name", "kind", "created_at", "expires_at", "revoked_at"],
                [
                    record.id, record.userId, ByteBuffer(bytes: token.hash), record.name, record.kind.rawValue, record.createdAt,
                    record.expiresAt, record.revokedAt,
                ]
            )
        case .room(let room):
            return (
                "rooms", ["id", "name", "name_key", "kind", "is_public", "creator_id", "direct_key", "created_at", "last_seq"],
                [
                    room.id, room.name, caseKey(room.name), room.kind.rawValue, room.isPublic, room.creatorId, room.directKey, room.createdAt,
                    room.lastSeq,
                ]
            )
        case .member(let member):
            return ("members", ["room_id", "user_id", "joined_at", "read_seq"], [member.roomId, member.userId, member.joinedAt, member.readSeq])
        case .message(let message):
            return (
                "messages",
                ["room_id", "seq", "id", "user_id", "content", "created_at", "client_id", "reply_to", "meta", "edited_at", "deleted", "reactions"],
                [
                    message.roomId, message.seq, message.id, message.userId, message.content, message.createdAt, message.clientId,
                    message.replyTo, try message.meta.map { try Wire.encodeString($0) }, message.editedAt, message.deleted,
                    try Wire.encodeString(message.reactions),
                ]
            )
        case .reaction(let reaction):
            return (
                "reactions", ["message_id", "reaction", "user_id", "created_at"],
                [reaction.messageId, reaction.reaction, reaction.userId, reaction.createdAt]
            )
        }
    }
}
