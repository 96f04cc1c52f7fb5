import SQLiteNIO
import SwitchboardProtocol
import SwitchboardStore

/// Pieces of SQL text that depend on how many values a statement carries.
enum SQL {
    /// SQLite's default limit of bound parameters; the bundled build allows more, but staying under
    /// the default keeps the store correct on any build.
    static let maxVariables = 32_766

    /// `?, ?, ?` for an `IN (…)` list.
    static func list(_ count: Int) -> String {
        Array(repeating: "?", count: count).joined(separator: ", ")
    }

    /// `(?, ?), (?, ?)` for a `VALUES` list.
    static func rows(_ count: Int, columns: Int) -> String {
        Array(repeating: "(\(list(columns)))", count: count).joined(separator: ", ")
    }
}

/// Column lists, each column named `prefix + column` so that rows of joined tables stay apart.
enum Columns {
    static func user(_ table: String, prefix: String = "") -> String {
        select(table, ["id", "username", "display_name", "is_bot"], prefix)
    }

    static func token(_ table: String?, prefix: String = "") -> String {
        select(table, ["id", "user_id", "name", "kind", "created_at", "expires_at", "revoked_at"], prefix)
    }

    static func message(_ table: String, prefix: String = "") -> String {
        select(
            table,
            ["id", "room_id", "seq", "user_id", "content", "created_at", "client_id", "reply_to", "meta", "edited_at", "deleted", "reactions"],
            prefix)
    }

    /// The columns of rooms `r`, with the member ids as a JSON array so that a room is one row.
    static let room = """
        \(select("r", ["id", "name", "kind", "is_public", "created_at", "last_seq"], "")),
        (SELECT json_group_array(mb.user_id ORDER BY mb.joined_at, mb.user_id) FROM members mb WHERE mb.room_id = r.id) AS member_ids
        """

    private static func select(_ table: String?, _ columns: [String], _ prefix: String) -> String {
        columns.map { column in "\(table.map { "\($0)." } ?? "")\(column) AS \(prefix)\(column)" }.joined(separator: ", ")
    }
}

/// Turns rows into protocol values.
enum Decode {
    static func user(_ row: SQLiteRow, prefix: String = "") throws -> User {
        User(
            id: try row.text(prefix + "id"), username: try row.text(prefix + "username"),
            displayName: try row.text(prefix + "display_name"), isBot: try row.bool(prefix + "is_bot"))
    }

    static func token(_ row: SQLiteRow, prefix: String = "") throws -> TokenRecord {
        let kindName = try row.text(prefix + "kind")
        guard let kind = TokenKind(rawValue: kindName) else {
            throw StoreError(.unavailable, "unknown token kind \(kindName) in the database")
        }
        return TokenRecord(
            id: try row.text(prefix + "id"), userId: try row.text(prefix + "user_id"), name: try row.text(prefix + "name"),
            kind: kind, createdAt: try row.integer(prefix + "created_at"), expiresAt: try row.optionalInteger(prefix + "expires_at"),
            revokedAt: try row.optionalInteger(prefix + "revoked_at"))
    }

    static func message(_ row: SQLiteRow, prefix: String = "") throws -> Message {
        let reactions = try row.text(prefix + "reactions")
        return Message(
            id: try row.text(prefix + "id"), roomId: try row.text(prefix + "room_id"), seq: try row.integer(prefix + "seq"),
            userId: try row.text(prefix + "user_id"), content: try row.text(prefix + "content"),
            createdAt: try row.integer(prefix + "created_at"), clientId: try row.optionalText(prefix + "client_id"),
            replyTo: try row.optionalText(prefix + "reply_to"),
            meta: try row.optionalText(prefix + "meta").map { try Wire.decode(JSONValue.self, from: $0) },
            editedAt: try row.optionalInteger(prefix + "edited_at"), deleted: try row.bool(prefix + "deleted"),
            // Most messages have no reactions; skip the decoder for them.
            reactions: reactions == "{}" ? [:] : try Wire.decode([String: Int].self, from: reactions))
    }

    static func room(_ row: SQLiteRow) throws -> Room {
        let kindName = try row.text("kind")
        let kind = RoomKind(rawValue: kindName)
        guard kind == .group || kind == .direct else {
            throw StoreError(.unavailable, "unknown room kind \(kindName) in the database")
        }
        return Room(
            id: try row.text("id"), name: try row.text("name"), kind: kind, isPublic: try row.bool("is_public"),
            createdAt: try row.integer("created_at"), lastSeq: try row.integer("last_seq"),
            members: try Wire.decode([String].self, from: try row.text("member_ids")))
    }
}

extension SQLiteRow {
    func text(_ column: String) throws -> String {
        guard case .text(let value) = try value(column) else { throw Self.mismatch(column, "text") }
        return value
    }

    func optionalText(_ column: String) throws -> String? {
        let data = try value(column)
        return data.isNull ? nil : try text(column)
    }

    func integer(_ column: String) throws -> Int {
        guard case .integer(let value) = try value(column) else { throw Self.mismatch(column, "an integer") }
        return Int(value)
    }

    func optionalInteger(_ column: String) throws -> Int? {
        let data = try value(column)
        return data.isNull ? nil : try integer(column)
    }

    func bool(_ column: String) throws -> Bool {
        try integer(column) != 0
    }

    func isNull(_ column: String) throws -> Bool {
        try value(column).isNull
    }

    private func value(_ column: String) throws -> SQLiteData {
        guard let data = self.column(column) else { throw StoreError(.unavailable, "the query has no column \(column)") }
        return data
    }

    private static func mismatch(_ column: String, _ expected: String) -> StoreError {
        StoreError(.unavailable, "column \(column) does not hold \(expected)")
    }
}

extension SQLiteData {
    static func optionalText(_ value: String?) -> SQLiteData {
        value.map { .text($0) } ?? .null
    }

    static func optionalInteger(_ value: Int?) -> SQLiteData {
        value.map { .integer($0) } ?? .null
    }
}

extension Array {
    /// Consecutive slices of at most `size` elements, to keep each statement under the variable limit.
    func chunks(ofCount size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}
