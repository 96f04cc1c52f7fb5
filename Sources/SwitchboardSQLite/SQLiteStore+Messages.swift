import SQLiteNIO
import SwitchboardProtocol
import SwitchboardStore

extension SQLiteStore {
    /// The message with this id.
    public func message(id: String) async throws -> Message? {
        try await read { connection in
            try await connection.query("SELECT \(Columns.message("m")) FROM messages m WHERE m.id = ?", [.text(id)])
                .first.map { try Decode.message($0) }
        }
    }

    /// A page of history by the contract's rules (``HistoryWindow``).
    public func history(roomId: String, after: Int?, before: Int?, limit: Int) async throws -> HistoryPage {
        let window = HistoryWindow(after: after, before: before, limit: limit)
        let rows = try await read { connection in
            try await connection.query(
                """
                SELECT \(Columns.message("m")) FROM messages m
                WHERE m.room_id = ?1 AND m.seq > ?2 AND m.seq < ?3
                ORDER BY m.seq \(window.ascending ? "ASC" : "DESC") LIMIT ?4
                """, [.text(roomId), .integer(window.lowerBound), .integer(window.upperBound), .integer(window.fetchCount)])
        }
        return window.page(try rows.map { try Decode.message($0) })
    }

    /// The messages after `since` and the room's `lastSeq`, read by one statement so that no message
    /// falls between the two. `.notFound` for an unknown room.
    public func replay(roomId: String, since: Int, cap: Int) async throws -> Replay {
        let since = max(since, 0)
        let cap = max(cap, 0)
        let rows = try await read { connection in
            // Seqs have no gaps, so `last_seq - since` is the number missed: over the cap, the join
            // reads no message at all.
            try await connection.query(
                """
                SELECT r.last_seq AS last_seq, \(Columns.message("m", prefix: "m_"))
                FROM rooms r
                LEFT JOIN messages m ON m.room_id = r.id AND m.seq > ?2 AND r.last_seq - ?2 <= ?3
                WHERE r.id = ?1
                ORDER BY m.seq
                """, [.text(roomId), .integer(since), .integer(cap)])
        }
        guard let first = rows.first else { throw StoreError(.notFound, "no room with id \(roomId)") }
        let lastSeq = try first.integer("last_seq")
        let messages = try rows.filter { try !$0.isNull("m_id") }.map { try Decode.message($0, prefix: "m_") }
        return Replay(messages: messages, lastSeq: lastSeq, truncated: lastSeq - since > cap)
    }

    /// Adds or removes one user's reaction and returns the message's new counts, kept on the message
    /// row in the same transaction so that reading messages needs no join. `.notFound` for an
    /// unknown message.
    public func react(messageId: String, userId: String, reaction: String, action: ReactionAction, now: Int) async throws -> ReactionOutcome {
        try await write { connection in
            guard let row = try await connection.query("SELECT reactions FROM messages WHERE id = ?", [.text(messageId)]).first else {
                throw StoreError(.notFound, "no message with id \(messageId)")
            }
            var counts = try Wire.decode([String: Int].self, from: try row.text("reactions"))
            let changed: [SQLiteRow]
            switch action {
            case .add:
                changed = try await connection.query(
                    """
                    INSERT INTO reactions (message_id, reaction, user_id, created_at) VALUES (?, ?, ?, ?)
                    ON CONFLICT DO NOTHING RETURNING message_id
                    """, [.text(messageId), .text(reaction), .text(userId), .integer(now)])
                if !changed.isEmpty { counts[reaction, default: 0] += 1 }
            case .remove:
                changed = try await connection.query(
                    "DELETE FROM reactions WHERE message_id = ? AND reaction = ? AND user_id = ? RETURNING message_id",
                    [.text(messageId), .text(reaction), .text(userId)])
                if !changed.isEmpty {
                    let remaining = counts[reaction, default: 1] - 1
                    counts[reaction] = remaining > 0 ? remaining : nil
                }
            default:
                throw StoreError(.forbidden, "unknown reaction action '\(action)': use add or remove")
            }
            if !changed.isEmpty {
                _ = try await connection.query(
                    "UPDATE messages SET reactions = ? WHERE id = ?", [.text(try Wire.encodeString(counts)), .text(messageId)])
            }
            return ReactionOutcome(reactions: counts, changed: !changed.isEmpty)
        }
    }
}
