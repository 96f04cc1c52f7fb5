import SQLiteNIO
import SwitchboardProtocol
import SwitchboardStore

extension SQLiteStore {
    /// Creates a group room whose members are the creator and `memberIds`; `.notFound` when one of
    /// them is not a user.
    public func createRoom(_ new: NewRoom) async throws -> Room {
        let roomId = Ids.make("r_")
        let memberIds = new.allMemberIds
        return try await write { [memberIds] connection in
            try await Self.requireUsers(memberIds, on: connection)
            _ = try await connection.query(
                "INSERT INTO rooms (id, name, name_key, kind, is_public, creator_id, created_at) VALUES (?, ?, ?, 'group', ?, ?, ?)",
                [.text(roomId), .text(new.name), .text(Self.caseKey(new.name)), .integer(new.isPublic ? 1 : 0), .optionalText(new.creatorId), .integer(new.now)])
            try await Self.insertMembers(memberIds, roomId: roomId, now: new.now, on: connection)
            return try await Self.requireRoom(roomId, on: connection)
        }
    }

    /// The room with this id, with its members.
    public func room(id: String) async throws -> Room? {
        try await read { connection in try await Self.fetchRoom(id, on: connection) }
    }

    /// The group room with this name in any case, the oldest when several share it.
    public func room(named name: String) async throws -> Room? {
        try await read { connection in
            try await connection.query(
                "SELECT \(Columns.room) FROM rooms r WHERE r.name_key = ? AND r.kind = 'group' ORDER BY r.created_at, r.rowid LIMIT 1",
                [.text(Self.caseKey(name))]
            ).first.map { try Decode.room($0) }
        }
    }

    /// Every room, oldest first.
    public func allRooms() async throws -> [Room] {
        try await read { connection in
            try await connection.query("SELECT \(Columns.room) FROM rooms r ORDER BY r.created_at, r.rowid").map { try Decode.room($0) }
        }
    }

    /// The rooms of a member, the most recently active first, each with its newest message and the
    /// number of messages from others above the member's read marker. `seq` has no gaps, so that
    /// number is the distance from the marker to the room's `lastSeq` less the member's own
    /// messages above the marker, found by an index (there are none unless the member left and
    /// rejoined, since a sender's marker moves to the end of the room): the same cost for 10 or
    /// 100,000 unread. One statement, so that the
    /// three agree.
    public func rooms(memberId userId: String) async throws -> [RoomSummary] {
        try await read { connection in
            let rows = try await connection.query(
                """
                SELECT \(Columns.room),
                    max(r.last_seq - me.read_seq - (SELECT count(*) FROM messages own
                     WHERE own.room_id = r.id AND own.user_id = me.user_id AND own.seq > me.read_seq), 0) AS unread,
                    \(Columns.message("newest", prefix: "m_"))
                FROM members me
                JOIN rooms r ON r.id = me.room_id
                LEFT JOIN messages newest ON newest.room_id = r.id AND newest.seq = r.last_seq
                WHERE me.user_id = ?
                ORDER BY coalesce(newest.created_at, r.created_at) DESC, r.id
                """, [.text(userId)])
            return try rows.map { row in
                RoomSummary(
                    room: try Decode.room(row),
                    lastMessage: try row.isNull("m_id") ? nil : try Decode.message(row, prefix: "m_"),
                    unread: try row.integer("unread"))
            }
        }
    }

    /// The rooms of a member, without their newest message or unread count.
    public func memberRooms(userId: String) async throws -> [Room] {
        try await read { connection in
            try await connection.query(
                "SELECT \(Columns.room) FROM members me JOIN rooms r ON r.id = me.room_id WHERE me.user_id = ?", [.text(userId)]
            ).map { try Decode.room($0) }
        }
    }

    /// Adds a member, whose read marker starts at 0: the contract moves it only when they join over
    /// WebSocket, read the newest page or send. `.notFound` for an unknown room or user;
    /// `.forbidden` for a third member of a direct room.
    public func addMember(roomId: String, userId: String, now: Int) async throws -> Room {
        try await write { connection in
            let room = try await Self.requireRoom(roomId, on: connection)
            if room.members.contains(userId) { return room }
            guard room.kind == .group else { throw StoreError(.forbidden, "a direct room has exactly two members") }
            try await Self.requireUsers([userId], on: connection)
            try await Self.insertMembers([userId], roomId: roomId, now: now, on: connection)
            return try await Self.requireRoom(roomId, on: connection)
        }
    }

    /// Removes a member; nil when the user was not one. `.notFound` for an unknown room;
    /// `.forbidden` for a direct room, which keeps its two members so that ``directRoom(between:and:now:)``
    /// always answers with a room both belong to.
    public func removeMember(roomId: String, userId: String) async throws -> Room? {
        try await write { connection in
            var room = try await Self.requireRoom(roomId, on: connection)
            guard room.members.contains(userId) else { return nil }
            guard room.kind == .group else { throw StoreError(.forbidden, "a direct room has exactly two members") }
            _ = try await connection.query("DELETE FROM members WHERE room_id = ? AND user_id = ?", [.text(roomId), .text(userId)])
            room.members.removeAll { $0 == userId }
            return room
        }
    }

    /// The direct room of two users, created on first use and named after both usernames.
    /// `.forbidden` for a user and themself, since a direct room has exactly two members;
    /// `.notFound` when either is not a user.
    public func directRoom(between first: String, and second: String, now: Int) async throws -> Room {
        guard first != second else { throw StoreError(.forbidden, "a direct room needs two different users") }
        let directKey = [first, second].sorted().joined(separator: " ")
        // Nearly every call finds the room, so look on a reader before queueing a write.
        if let room = try await read({ connection in try await Self.fetchDirectRoom(directKey, on: connection) }) {
            return room
        }
        return try await write { connection in
            if let room = try await Self.fetchDirectRoom(directKey, on: connection) { return room }
            let usernames = try await connection.query(
                "SELECT username FROM users WHERE id IN (?, ?) ORDER BY username_key", [.text(first), .text(second)]
            ).map { try $0.text("username") }
            guard usernames.count == 2 else { throw StoreError(.notFound, "no user with id \(first) or \(second)") }
            let roomId = Ids.make("r_")
            let name = usernames.joined(separator: ", ")
            _ = try await connection.query(
                "INSERT INTO rooms (id, name, name_key, kind, is_public, direct_key, created_at) VALUES (?, ?, ?, 'direct', 0, ?, ?)",
                [.text(roomId), .text(name), .text(Self.caseKey(name)), .text(directKey), .integer(now)])
            try await Self.insertMembers([first, second], roomId: roomId, now: now, on: connection)
            return try await Self.requireRoom(roomId, on: connection)
        }
    }

    /// Moves a member's read marker up to `seq`, never down and never past the room's newest
    /// message, so that a marker from the future cannot hide messages not yet sent.
    public func markRead(roomId: String, userId: String, seq: Int) async throws {
        try await write { connection in
            _ = try await connection.query(
                """
                UPDATE members SET read_seq = max(read_seq, min(?3, (SELECT last_seq FROM rooms WHERE id = ?1)))
                WHERE room_id = ?1 AND user_id = ?2
                """, [.text(roomId), .text(userId), .integer(seq)])
        }
    }

    /// The creator of a group room; nil for direct rooms, rooms made by an administrator, and unknown rooms.
    public func creator(roomId: String) async throws -> String? {
        try await read { connection in
            try await connection.query("SELECT creator_id FROM rooms WHERE id = ? AND kind = 'group'", [.text(roomId)])
                .first.flatMap { try $0.optionalText("creator_id") }
        }
    }

    static func fetchRoom(_ roomId: String, on connection: SQLiteConnection) async throws -> Room? {
        try await connection.query("SELECT \(Columns.room) FROM rooms r WHERE r.id = ?", [.text(roomId)]).first.map { try Decode.room($0) }
    }

    static func requireRoom(_ roomId: String, on connection: SQLiteConnection) async throws -> Room {
        guard let room = try await fetchRoom(roomId, on: connection) else { throw StoreError(.notFound, "no room with id \(roomId)") }
        return room
    }

    private static func fetchDirectRoom(_ directKey: String, on connection: SQLiteConnection) async throws -> Room? {
        try await connection.query("SELECT \(Columns.room) FROM rooms r WHERE r.direct_key = ?", [.text(directKey)]).first.map { try Decode.room($0) }
    }

    /// Throws `.notFound` naming the ids that are not users, rather than letting a foreign key fail.
    private static func requireUsers(_ userIds: [String], on connection: SQLiteConnection) async throws {
        var missing = Set(userIds)
        for chunk in userIds.chunks(ofCount: SQL.maxVariables) {
            let rows = try await connection.query("SELECT id FROM users WHERE id IN (\(SQL.list(chunk.count)))", chunk.map { .text($0) })
            for row in rows { missing.remove(try row.text("id")) }
        }
        guard missing.isEmpty else { throw StoreError(.notFound, "no user with id \(missing.sorted().joined(separator: ", "))") }
    }

    private static func insertMembers(_ userIds: [String], roomId: String, now: Int, on connection: SQLiteConnection) async throws {
        for chunk in userIds.chunks(ofCount: SQL.maxVariables / 3) {
            _ = try await connection.query(
                "INSERT INTO members (room_id, user_id, joined_at) VALUES \(SQL.rows(chunk.count, columns: 3)) ON CONFLICT DO NOTHING",
                chunk.flatMap { [.text(roomId), .text($0), .integer(now)] })
        }
    }
}
