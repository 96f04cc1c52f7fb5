import Foundation
import PostgresNIO

/// What to search for, and where.
public struct SearchQuery: Sendable, Hashable {
    /// The query, in `websearch_to_tsquery` syntax: words, `"a phrase"`, `or`, `-excluded`.
    public var text: String
    /// A room id or name; nil for every room.
    public var room: String?
    /// A user id or username; nil for everyone.
    public var user: String?
    /// Messages from this time on.
    public var from: Date?
    /// Messages before this time.
    public var to: Date?
    /// The most results (1 to 1000). Default 20.
    public var limit: Int
    /// Only these rooms (what a member may see); nil for every room.
    public var onlyRooms: [String]?

    /// A query.
    public init(text: String, room: String? = nil, user: String? = nil, from: Date? = nil, to: Date? = nil, limit: Int = 20, onlyRooms: [String]? = nil) {
        self.text = text
        self.room = room
        self.user = user
        self.from = from
        self.to = to
        self.limit = limit
        self.onlyRooms = onlyRooms
    }
}

/// A message found by a search, with its rank and a snippet with the matches marked `**like this**`.
public struct SearchHit: Sendable, Hashable {
    public var roomId: String
    public var roomName: String
    public var seq: Int
    public var messageId: String
    public var userId: String
    public var username: String
    /// Milliseconds since the Unix epoch.
    public var createdAt: Int
    public var rank: Double
    public var snippet: String
}

/// An archived message as exported.
public struct ArchivedMessage: Sendable, Hashable, Codable {
    public var roomId: String
    public var seq: Int
    public var id: String
    public var userId: String
    public var username: String
    public var displayName: String
    public var content: String
    /// Milliseconds since the Unix epoch.
    public var createdAt: Int
    public var replyTo: String?
    /// The message's `meta`, as JSON text (`meta.bridge` names the bridge it came through).
    public var meta: String?
    /// Milliseconds since the Unix epoch.
    public var editedAt: Int?
    public var deleted: Bool
    /// Reaction counts by emoji.
    public var reactions: [String: Int]
}

extension ArchiveDatabase {
    /// Messages matching `query`, best first (`ts_rank_cd`, then newest), with highlighted snippets.
    ///
    /// Throws ``ArchiveError`` `.invalid` for an empty query or a limit out of range.
    public func search(_ query: SearchQuery) async throws -> [SearchHit] {
        let text = query.text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty else { throw ArchiveError(.invalid, "the search query is empty: give words to look for") }
        guard (1...1000).contains(query.limit) else { throw ArchiveError(.invalid, "the limit \(query.limit) is out of range: use 1 to 1000") }
        if let rooms = query.onlyRooms, rooms.isEmpty { return [] }
        let s = schema
        let sql: PostgresQuery = """
            SELECT m.room_id, coalesce(r.name, m.room_id), m.seq, m.id, m.user_id, coalesce(u.username, m.user_id),
                   (extract(epoch FROM m.created_at) * 1000)::bigint, ts_rank_cd(m.search, q)::float8,
                   ts_headline(l.cfg, m.content, q, 'StartSel=**, StopSel=**, MaxWords=24, MinWords=8, MaxFragments=2, FragmentDelimiter=" … "')
            FROM (SELECT value::regconfig AS cfg FROM \(unescaped: s).settings WHERE key = 'language') l
            CROSS JOIN LATERAL websearch_to_tsquery(l.cfg, \(text)) q
            JOIN \(unescaped: s).messages m ON m.search @@ q
            LEFT JOIN \(unescaped: s).rooms r ON r.id = m.room_id
            LEFT JOIN \(unescaped: s).users u ON u.id = m.user_id
            WHERE NOT m.deleted
              AND (\(query.room)::text IS NULL OR m.room_id = \(query.room) OR lower(r.name) = lower(\(query.room)))
              AND (\(query.user)::text IS NULL OR m.user_id = \(query.user) OR lower(u.username) = lower(\(query.user)))
              AND (\(query.from)::timestamptz IS NULL OR m.created_at >= \(query.from))
              AND (\(query.to)::timestamptz IS NULL OR m.created_at < \(query.to))
              AND (\(query.onlyRooms)::text[] IS NULL OR m.room_id = ANY(\(query.onlyRooms)))
            ORDER BY 8 DESC, m.created_at DESC, m.seq DESC
            LIMIT \(query.limit)
            """
        return try await database("search the archive") {
            var hits: [SearchHit] = []
            let rows = try await client.query(sql, logger: logger)
            for try await (roomId, roomName, seq, id, userId, username, createdAt, rank, snippet) in rows.decode((String, String, Int, String, String, String, Int, Double, String).self) {
                hits.append(SearchHit(roomId: roomId, roomName: roomName, seq: seq, messageId: id, userId: userId, username: username, createdAt: createdAt, rank: rank, snippet: snippet))
            }
            return hits
        }
    }

    /// The archived room named `room` (an id, or a name without regard to case).
    ///
    /// Throws ``ArchiveError`` `.notFound` when there is none, `.invalid` when the name is ambiguous.
    public func findRoom(_ room: String) async throws -> (id: String, name: String) {
        let all = try await rooms()
        let matches = all.filter { $0.id == room || $0.name.lowercased() == room.lowercased() }
        if let exact = matches.first(where: { $0.id == room }) { return exact }
        guard let first = matches.first else {
            throw ArchiveError(.notFound, "the archive has no room \(room); it has: \(all.map { "\($0.name) (\($0.id))" }.joined(separator: ", "))")
        }
        guard matches.count == 1 else {
            throw ArchiveError(.invalid, "several archived rooms are named \(room) (\(matches.map(\.id).joined(separator: ", "))): give the room's id")
        }
        return first
    }

    /// Calls `each` with the messages of a room, in `seq` order, from `from` (included) to `to`
    /// (excluded), streaming: memory stays bounded whatever the room's size.
    public func exportMessages(roomId: String, from: Date? = nil, to: Date? = nil, _ each: (ArchivedMessage) throws -> Void) async throws {
        let s = schema
        let sql: PostgresQuery = """
            SELECT m.seq, m.id, m.user_id, coalesce(u.username, m.user_id), coalesce(u.display_name, m.user_id), m.content,
                   (extract(epoch FROM m.created_at) * 1000)::bigint, m.reply_to, m.meta::text,
                   (extract(epoch FROM m.edited_at) * 1000)::bigint, m.deleted,
                   (SELECT jsonb_object_agg(r.reaction, r.count)::text FROM \(unescaped: s).reactions r WHERE r.message_id = m.id)
            FROM \(unescaped: s).messages m LEFT JOIN \(unescaped: s).users u ON u.id = m.user_id
            WHERE m.room_id = \(roomId)
              AND (\(from)::timestamptz IS NULL OR m.created_at >= \(from))
              AND (\(to)::timestamptz IS NULL OR m.created_at < \(to))
            ORDER BY m.seq
            """
        try await database("export room \(roomId)") {
            let rows = try await client.query(sql, logger: logger)
            let decoder = JSONDecoder()
            for try await (seq, id, userId, username, displayName, content, createdAt, replyTo, meta, editedAt, deleted, reactions)
                in rows.decode((Int, String, String, String, String, String, Int, String?, String?, Int?, Bool, String?).self)
            {
                try each(
                    ArchivedMessage(
                        roomId: roomId, seq: seq, id: id, userId: userId, username: username, displayName: displayName, content: content,
                        createdAt: createdAt, replyTo: replyTo, meta: meta, editedAt: editedAt, deleted: deleted,
                        reactions: try reactions.map { try decoder.decode([String: Int].self, from: Data($0.utf8)) } ?? [:]))
            }
        }
    }
}
