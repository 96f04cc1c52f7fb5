import Logging
import PostgresNIO
import SwitchboardProtocol
import SwitchboardStore

extension PostgresStore {
    /// Creates a group room whose members are the creator and `memberIds`; `.notFound` when one of
    /// them is not a user.
    public func createRoom(_ new: NewRoom) async throws -> Room {
        let roomId = Ids.make("r_")
        let memberIds = new.allMemberIds
        return try await write { [memberIds, logger] connection in
            try await Self.requireUsers(memberIds, on: connection, logger: logger)
            try await connection.query(
                """
                INSERT INTO rooms (id, name, name_key, kind, is_public, creator_id, created_at)
                VALUES (\(roomId), \(new.name), \(caseKey(new.name)), 'group', \(new.isPublic), \(new.creatorId), \(new.now))
                """, logger: logger)
            try await Self.insertMembers(memberIds, roomId: roomId, now: new.now, on: connection, logger: logger)
            return try await Self.requireRoom(roomId, on: connection, logger: logger)
        }
    }

    /// The room with this id, with its members.
    public func room(id: String) async throws -> Room? {
        try await read { connection in try await Self.fetchRoom(id, on: connection, logger: logger) }
    }

    /// The group room with this name in any case, the oldest when several share it.
    public func room(named name: String) async throws -> Room? {
        try await read { connection in
            try await connection.rows(
                """
                SELECT \(unescaped: Columns.room) FROM rooms r WHERE r.name_key = \(caseKey(name)) AND r.kind = 'group'
                ORDER BY r.created_at, r.position LIMIT 1
                """, logger: logger
            ).first.map { try Decode.room($0) }
        }
    }

    /// Every room, oldest first.
    public func allRooms() async throws -> [Room] {
        try await read { connection in
            try await connection.rows("SELECT \(unescaped: Columns.room) FROM rooms r ORDER BY r.created_at, r.position", logger: logger)
                .map { try Decode.room($0) }
        }
    }

    /// Public group rooms whose name contains `query` in any case, by name; `%` and `_` in the
    /// query match only themselves.
    public func publicRooms(query: String, limit: Int) async throws -> [Room] {
        try await read { connection in
            try await connection.rows(
                """
                SELECT \(unescaped: Columns.room) FROM rooms r
                WHERE r.kind = 'group' AND r.is_public AND r.name_key LIKE \(containsPattern(query)) ESCAPE '\\'
                ORDER BY r.name_key COLLATE "C", r.id COLLATE "C" LIMIT \(max(limit, 0))
                """, logger: logger
            ).map { try Decode.room($0) }
        }
    }

    /// The rooms of a member, the most recently active first, each with its newest message and the
    /// number of messages from others above the member's read marker. `seq` has no gaps, so that
    /// number is the distance from the marker to the room's `lastSeq` less the member's own
    /// messages above the marker, found by an index (there are none unless the member left and
    /// rejoined, since a sender's marker moves to the end of the room): the same cost for 10 or
    /// 100,000 unread, in one statement.
    public func rooms(memberId userId: String) async throws -> [RoomSummary] {
        try await read { connection in
            try await connection.rows(
                """
                SELECT \(unescaped: Columns.room),
                    greatest(r.last_seq - me.read_seq - (SELECT count(*) FROM messages own
                     WHERE own.room_id = r.id AND own.user_id = me.user_id AND own.seq > me.read_seq), 0) AS unread,
                    \(unescaped: Columns.message("newest", prefix: "m_"))
                FROM members me
                JOIN rooms r ON r.id = me.room_id
                LEFT JOIN messages newest ON newest.room_id = r.id AND newest.seq = r.last_seq
                WHERE me.user_id = \(userId)
                ORDER BY coalesce(newest.created_at, r.created_at) DESC, r.id
                """, logger: logger
            ).map { row in
                RoomSummary(
                    room: try Decode.room(row),
                    lastMessage: try row["m_id"].decode(String?.self) == nil ? nil : try Decode.message(row, prefix: "m_"),
                    unread: try row["unread"].decode(Int.self))
            }
        }
    }

    /// The rooms of a member, without their newest message or unread count.
    public func memberRooms(userId: String) async throws -> [Room] {
        try await read { connection in
            try await connection.rows(
                "SELECT \(unescaped: Columns.room) FROM members me JOIN rooms r ON r.id = me.room_id WHERE me.user_id = \(userId)",
                logger: logger
            ).map { try Decode.room($0) }
        }
    }

    /// Adds a member, whose read marker starts at 0. `.notFound` for an unknown room or user;
    /// `.forbidden` for a third member of a direct room.
    public func addMember(roomId: String, userId: String, now: Int) async throws -> Room {
        try await write { [logger] connection in
            let room = try await Self.requireRoom(roomId, on: connection, logger: logger)
            if room.members.contains(userId) { return room }
            guard room.kind == .group else { throw StoreError(.forbidden, "a direct room has exactly two members") }
            try await Self.requireUsers([userId], on: connection, logger: logger)
            try await Self.insertMembers([userId], roomId: roomId, now: now, on: connection, logger: logger)
            return try await Self.requireRoom(roomId, on: connection, logger: logger)
        }
    }

    /// Removes a member; nil when the user was not one. `.notFound` for an unknown room;
    /// `.forbidden` for a direct room, which keeps its two members.
    public func removeMember(roomId: String, userId: String) async throws -> Room? {
        try await write { [logger] connection in
            var room = try await Self.requireRoom(roomId, on: connection, logger: logger)
            guard room.members.contains(userId) else { return nil }
            guard room.kind == .group else { throw StoreError(.forbidden, "a direct room has exactly two members") }
            try await connection.query("DELETE FROM members WHERE room_id = \(roomId) AND user_id = \(userId)", logger: logger)
            room.members.removeAll { $0 == userId }
            return room
        }
    }

    /// The direct room of two users, created on first use and named after both usernames.
    /// `.forbidden` for a user and themself; `.notFound` when either is not a user.
    public func directRoom(between first: String, and second: String, now: Int) async throws -> Room {
        guard first != second else { throw StoreError(.forbidden, "a direct room needs two different users") }
        let directKey = [first, second].sorted().joined(separator: " ")
        if let room = try await read({ connection in try await Self.fetchDirectRoom(directKey, on: connection, logger: logger) }) {
            return room
        }
        return try await write { [logger] connection in
            let usernames = try await connection.rows(
                "SELECT username FROM users WHERE id IN (\(first), \(second)) ORDER BY username_key", logger: logger
            ).map { try $0["username"].decode(String.self) }
            guard usernames.count == 2 else { throw StoreError(.notFound, "no user with id \(first) or \(second)") }
            let roomId = Ids.make("r_")
            let name = usernames.joined(separator: ", ")
            // A concurrent first use may have made it meanwhile: the unique key waits for it, then
            // this insert does nothing and the room read below is the other one.
            let inserted = try await connection.rows(
                """
                INSERT INTO rooms (id, name, name_key, kind, is_public, direct_key, created_at)
                VALUES (\(roomId), \(name), \(caseKey(name)), 'direct', false, \(directKey), \(now))
                ON CONFLICT (direct_key) DO NOTHING RETURNING id
                """, logger: logger)
            if !inserted.isEmpty {
                try await Self.insertMembers([first, second], roomId: roomId, now: now, on: connection, logger: logger)
            }
            guard let room = try await Self.fetchDirectRoom(directKey, on: connection, logger: logger) else {
                throw StoreError(.unavailable, "the direct room of \(first) and \(second) vanished while it was made")
            }
            return room
        }
    }

    /// Moves a member's read marker up to `seq`, never down and never past the room's newest message.
    public func markRead(roomId: String, userId: String, seq: Int) async throws {
        try await read { connection in
            try await connection.query(
                """
                UPDATE members SET read_seq = greatest(read_seq, least(\(seq), (SELECT last_seq FROM rooms WHERE id = \(roomId))))
                WHERE room_id = \(roomId) AND user_id = \(userId)
                """, logger: logger)
        }
    }

    /// The creator of a group room; nil for direct rooms, rooms made by an administrator, and unknown rooms.
    public func creator(roomId: String) async throws -> String? {
        try await read { connection in
            try await connection.rows("SELECT creator_id FROM rooms WHERE id = \(roomId) AND kind = 'group'", logger: logger)
                .first.flatMap { try $0["creator_id"].decode(String?.self) }
        }
    }

    static func fetchRoom(_ roomId: String, on connection: PostgresConnection, logger: Logger) async throws -> Room? {
        try await connection.rows("SELECT \(unescaped: Columns.room) FROM rooms r WHERE r.id = \(roomId)", logger: logger)
            .first.map { try Decode.room($0) }
    }

    static func requireRoom(_ roomId: String, on connection: PostgresConnection, logger: Logger) async throws -> Room {
        guard let room = try await fetchRoom(roomId, on: connection, logger: logger) else {
            throw StoreError(.notFound, "no room with id \(roomId)")
        }
        return room
    }

    private static func fetchDirectRoom(_ directKey: String, on connection: PostgresConnection, logger: Logger) async throws -> Room? {
        try await connection.rows("SELECT \(unescaped: Columns.room) FROM rooms r WHERE r.direct_key = \(directKey)", logger: logger)
            .first.map { try Decode.room($0) }
    }

    /// Throws `.notFound` naming the ids that are not users, rather than letting a foreign key fail.
    private static func requireUsers(_ userIds: [String], on connection: PostgresConnection, logger: Logger) async throws {
        var missing = Set(userIds)
        for row in try await connection.rows("SELECT id FROM users WHERE id = ANY(\(userIds))", logger: logger) {
            missing.remove(try row["id"].decode(String.self))
        }
        guard missing.isEmpty else { throw StoreError(.notFound, "no user with id \(missing.sorted().joined(separator: ", "))") }
    }

    private static func insertMembers(_ userIds: [String], roomId: String, now: Int, on connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query(
            """
            INSERT INTO members (room_id, user_id, joined_at)
            SELECT \(roomId), member.id, \(now) FROM unnest(\(userIds)::text[]) AS member(id)
            ON CONFLICT DO NOTHING
            """, logger: logger)
    }
}
