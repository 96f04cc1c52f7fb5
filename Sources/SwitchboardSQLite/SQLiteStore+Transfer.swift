import SQLiteNIO
import SwitchboardProtocol
import SwitchboardStore

extension SQLiteStore: TransferableStore {
    /// A page of one table, after `last` in the table's key order. Pages are separate reads: copy
    /// a database whose server is stopped.
    public func exportPage(_ table: TransferTable, after last: TransferRecord?, limit: Int) async throws -> [TransferRecord] {
        let limit = SQLiteData.integer(max(limit, 0))
        return try await read { connection in
            switch table {
            case .users:
                let after: String = if case .user(let row)? = last { row.id } else { "" }
                return try await connection.query(
                    """
                    SELECT id, username, display_name, is_bot, password_hash, created_at FROM users
                    WHERE id > ? ORDER BY id LIMIT ?
                    """, [.text(after), limit]
                ).map { row in
                    .user(
                        .init(
                            id: try row.text("id"), username: try row.text("username"), displayName: try row.text("display_name"),
                            isBot: try row.bool("is_bot"), passwordHash: try row.optionalText("password_hash"),
                            createdAt: try row.integer("created_at")))
                }
            case .tokens:
                let after: String = if case .token(let row)? = last { row.record.id } else { "" }
                return try await connection.query(
                    "SELECT \(Columns.token("t")), t.hash AS hash FROM tokens t WHERE t.id > ? ORDER BY t.id LIMIT ?", [.text(after), limit]
                ).map { row in
                    guard case .blob(let hash)? = row.column("hash") else { throw StoreError(.unavailable, "a token's hash is not a blob") }
                    return .token(.init(record: try Decode.token(row), hash: Array(buffer: hash)))
                }
            case .rooms:
                let after: String = if case .room(let row)? = last { row.id } else { "" }
                return try await connection.query(
                    """
                    SELECT id, name, kind, is_public, creator_id, direct_key, created_at, last_seq FROM rooms
                    WHERE id > ? ORDER BY id LIMIT ?
                    """, [.text(after), limit]
                ).map { row in
                    let kindName = try row.text("kind")
                    let kind = RoomKind(rawValue: kindName)
                    guard kind == .group || kind == .direct else { throw StoreError(.unavailable, "unknown room kind \(kindName)") }
                    return .room(
                        .init(
                            id: try row.text("id"), name: try row.text("name"), kind: kind, isPublic: try row.bool("is_public"),
                            creatorId: try row.optionalText("creator_id"), directKey: try row.optionalText("direct_key"),
                            createdAt: try row.integer("created_at"), lastSeq: try row.integer("last_seq")))
                }
            case .members:
                let (room, user): (String, String) = if case .member(let row)? = last { (row.roomId, row.userId) } else { ("", "") }
                return try await connection.query(
                    """
                    SELECT room_id, user_id, joined_at, read_seq FROM members
                    WHERE (room_id, user_id) > (?, ?) ORDER BY room_id, user_id LIMIT ?
                    """, [.text(room), .text(user), limit]
                ).map { row in
                    .member(
                        .init(
                            roomId: try row.text("room_id"), userId: try row.text("user_id"), joinedAt: try row.integer("joined_at"),
                            readSeq: try row.integer("read_seq")))
                }
            case .messages:
                let (room, seq): (String, Int) = if case .message(let message)? = last { (message.roomId, message.seq) } else { ("", 0) }
                return try await connection.query(
                    """
                    SELECT \(Columns.message("m")) FROM messages m
                    WHERE (m.room_id, m.seq) > (?, ?) ORDER BY m.room_id, m.seq LIMIT ?
                    """, [.text(room), .integer(seq), limit]
                ).map { .message(try Decode.message($0)) }
            case .reactions:
                let key: [String] = if case .reaction(let row)? = last { [row.messageId, row.reaction, row.userId] } else { ["", "", ""] }
                return try await connection.query(
                    """
                    SELECT message_id, reaction, user_id, created_at FROM reactions
                    WHERE (message_id, reaction, user_id) > (?, ?, ?) ORDER BY message_id, reaction, user_id LIMIT ?
                    """, key.map { .text($0) } + [limit]
                ).map { row in
                    .reaction(
                        .init(
                            messageId: try row.text("message_id"), reaction: try row.text("reaction"), userId: try row.text("user_id"),
                            createdAt: try row.integer("created_at")))
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
                counts[table] = try await connection.query("SELECT count(*) AS n FROM \(table.rawValue)").first?.integer("n") ?? 0
            }
            return counts
        }
    }

    /// Stores the records as given, in one transaction.
    public func importRecords(_ records: [TransferRecord]) async throws {
        try await write { connection in
            for record in records {
                switch record {
                case .user(let user):
                    _ = try await connection.query(
                        """
                        INSERT INTO users (id, username, username_key, display_name, display_name_key, is_bot, password_hash, created_at)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                        [
                            .text(user.id), .text(user.username), .text(Self.caseKey(user.username)), .text(user.displayName),
                            .text(Self.caseKey(user.displayName)), .integer(user.isBot ? 1 : 0), .optionalText(user.passwordHash),
                            .integer(user.createdAt),
                        ])
                case .token(let token):
                    let record = token.record
                    _ = try await connection.query(
                        """
                        INSERT INTO tokens (id, user_id, hash, name, kind, created_at, expires_at, revoked_at)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                        [
                            .text(record.id), .text(record.userId), .blob(ByteBuffer(bytes: token.hash)), .text(record.name),
                            .text(record.kind.rawValue), .integer(record.createdAt), .optionalInteger(record.expiresAt),
                            .optionalInteger(record.revokedAt),
                        ])
                case .room(let room):
                    _ = try await connection.query(
                        """
                        INSERT INTO rooms (id, name, name_key, kind, is_public, creator_id, direct_key, created_at, last_seq)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                        [
                            .text(room.id), .text(room.name), .text(Self.caseKey(room.name)), .text(room.kind.rawValue),
                            .integer(room.isPublic ? 1 : 0), .optionalText(room.creatorId), .optionalText(room.directKey),
                            .integer(room.createdAt), .integer(room.lastSeq),
                        ])
                case .member(let member):
                    _ = try await connection.query(
                        "INSERT INTO members (room_id, user_id, joined_at, read_seq) VALUES (?, ?, ?, ?)",
                        [.text(member.roomId), .text(member.userId), .integer(member.joinedAt), .integer(member.readSeq)])
                case .message(let message):
                    _ = try await connection.query(
                        """
                        INSERT INTO messages (room_id, seq, id, user_id, content, created_at, client_id, reply_to, meta, edited_at, deleted, reactions)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                        [
                            .text(message.roomId), .integer(message.seq), .text(message.id), .text(message.userId), .text(message.content),
                            .integer(message.createdAt), .optionalText(message.clientId), .optionalText(message.replyTo),
                            .optionalText(try message.meta.map { try Wire.encodeString($0) }), .optionalInteger(message.editedAt),
                            .integer(message.deleted ? 1 : 0), .text(try Wire.encodeString(message.reactions)),
                        ])
                case .reaction(let reaction):
                    _ = try await connection.query(
                        "INSERT INTO reactions (message_id, reaction, user_id, created_at) VALUES (?, ?, ?, ?)",
                        [.text(reaction.messageId), .text(reaction.reaction), .text(reaction.userId), .integer(reaction.createdAt)])
                }
            }
        }
        // Rooms written here bypass the writer's numbering: forget what it knew of them.
        let roomIds = Set(records.compactMap { record -> String? in if case .room(let room) = record { room.id } else { nil } })
        if !roomIds.isEmpty {
            lastSeqCache.withLock { cache in for roomId in roomIds { cache[roomId] = nil } }
        }
    }
}
