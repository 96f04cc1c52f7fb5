import PostgresNIO
import SwitchboardProtocol
import SwitchboardStore

extension PostgresStore {
    /// The message with this id.
    public func message(id: String) async throws -> Message? {
        try await read { connection in
            try await connection.rows("SELECT \(unescaped: Columns.message("m")) FROM messages m WHERE m.id = \(id)", logger: logger)
                .first.map { try Decode.message($0) }
        }
    }

    /// A page of history by the contract's rules (``HistoryWindow``).
    public func history(roomId: String, after: Int?, before: Int?, limit: Int) async throws -> HistoryPage {
        let window = HistoryWindow(after: after, before: before, limit: limit)
        let rows = try await read { connection in
            try await connection.rows(
                """
                SELECT \(unescaped: Columns.message("m")) FROM messages m
                WHERE m.room_id = \(roomId) AND m.seq > \(window.lowerBound) AND m.seq < \(window.upperBound)
                ORDER BY m.seq \(unescaped: window.ascending ? "ASC" : "DESC") LIMIT \(window.fetchCount)
                """, logger: logger)
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
            try await connection.rows(
                """
                SELECT r.last_seq AS last_seq, \(unescaped: Columns.message("m", prefix: "m_"))
                FROM rooms r
                LEFT JOIN messages m ON m.room_id = r.id AND m.seq > \(since) AND r.last_seq - \(since) <= \(cap)
                WHERE r.id = \(roomId)
                ORDER BY m.seq
                """, logger: logger)
        }
        guard let first = rows.first else { throw StoreError(.notFound, "no room with id \(roomId)") }
        let lastSeq = try first["last_seq"].decode(Int.self)
        let messages = try rows.filter { try $0["m_id"].decode(String?.self) != nil }.map { try Decode.message($0, prefix: "m_") }
        return Replay(messages: messages, lastSeq: lastSeq, truncated: lastSeq - since > cap)
    }

    /// Adds or removes one user's reaction and returns the message's new counts, kept on the message
    /// row in the same transaction (the row locked meanwhile, so concurrent reactions all count).
    /// `.notFound` for an unknown message.
    public func react(messageId: String, userId: String, reaction: String, action: ReactionAction, now: Int) async throws -> ReactionOutcome {
        try await write { connection in
            guard let row = try await connection.rows("SELECT reactions FROM messages WHERE id = \(messageId) FOR UPDATE", logger: logger).first
            else {
                throw StoreError(.notFound, "no message with id \(messageId)")
            }
            var counts = try Wire.decode([String: Int].self, from: try row["reactions"].decode(String.self))
            let changed: Bool
            switch action {
            case .add:
                changed = !(try await connection.rows(
                    """
                    INSERT INTO reactions (message_id, reaction, user_id, created_at) VALUES (\(messageId), \(reaction), \(userId), \(now))
                    ON CONFLICT DO NOTHING RETURNING message_id
                    """, logger: logger
                ).isEmpty)
                if changed { counts[reaction, default: 0] += 1 }
            case .remove:
                changed = !(try await connection.rows(
                    """
                    DELETE FROM reactions WHERE message_id = \(messageId) AND reaction = \(reaction) AND user_id = \(userId)
                    RETURNING message_id
                    """, logger: logger
                ).isEmpty)
                if changed {
                    let remaining = counts[reaction, default: 1] - 1
                    counts[reaction] = remaining > 0 ? remaining : nil
                }
            default:
                throw StoreError(.forbidden, "unknown reaction action '\(action)': use add or remove")
            }
            if changed {
                let encoded = try Wire.encodeString(counts)
                try await connection.query("UPDATE messages SET reactions = \(encoded) WHERE id = \(messageId)", logger: logger)
            }
            return ReactionOutcome(reactions: counts, changed: changed)
        }
    }
}
