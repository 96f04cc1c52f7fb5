import Logging
import PostgresNIO
import SwitchboardProtocol
import SwitchboardStore

/// Column lists, each column named `prefix + column` so that rows of joined tables stay apart.
enum Columns {
    static func user(_ table: String, prefix: String = "") -> String {
        select(table, ["id", "username", "display_name", "is_bot"], prefix)
    }

    static func token(_ table: String, prefix: String = "") -> String {
        select(table, ["id", "user_id", "name", "kind", "created_at", "expires_at", "revoked_at"], prefix)
    }

    static func message(_ table: String, prefix: String = "") -> String {
        select(
            table,
            ["id", "room_id", "seq", "user_id", "content", "created_at", "client_id", "reply_to", "meta", "edited_at", "deleted", "reactions"],
            prefix)
    }

    /// The columns of rooms `r`, with the member ids as an array so that a room is one row.
    static let room = """
        \(select("r", ["id", "name", "kind", "is_public", "created_at", "last_seq"], "")),
        ARRAY(SELECT mb.user_id FROM members mb WHERE mb.room_id = r.id ORDER BY mb.joined_at, mb.user_id) AS member_ids
        """

    private static func select(_ table: String, _ columns: [String], _ prefix: String) -> String {
        columns.map { column in "\(table).\(column) AS \(prefix)\(column)" }.joined(separator: ", ")
    }
}

/// Turns rows into protocol values.
enum Decode {
    static func user(_ row: PostgresRandomAccessRow, prefix: String = "") throws -> User {
        User(
            id: try row[prefix + "id"].decode(String.self), username: try row[prefix + "username"].decode(String.self),
            displayName: try row[prefix + "display_name"].decode(String.self), isBot: try row[prefix + "is_bot"].decode(Bool.self))
    }

    static func token(_ row: PostgresRandomAccessRow, prefix: String = "") throws -> TokenRecord {
        let kindName = try row[prefix + "kind"].decode(String.self)
        guard let kind = TokenKind(rawValue: kindName) else {
            throw StoreError(.unavailable, "unknown token kind \(kindName) in the database")
        }
        return TokenRecord(
            id: try row[prefix + "id"].decode(String.self), userId: try row[prefix + "user_id"].decode(String.self),
            name: try row[prefix + "name"].decode(String.self), kind: kind, createdAt: try row[prefix + "created_at"].decode(Int.self),
            expiresAt: try row[prefix + "expires_at"].decode(Int?.self), revokedAt: try row[prefix + "revoked_at"].decode(Int?.self))
    }

    static func message(_ row: PostgresRandomAccessRow, prefix: String = "") throws -> Message {
        let reactions = try row[prefix + "reactions"].decode(String.self)
        return Message(
            id: try row[prefix + "id"].decode(String.self), roomId: try row[prefix + "room_id"].decode(String.self),
            seq: try row[prefix + "seq"].decode(Int.self), userId: try row[prefix + "user_id"].decode(String.self),
            content: try row[prefix + "content"].decode(String.self), createdAt: try row[prefix + "created_at"].decode(Int.self),
            clientId: try row[prefix + "client_id"].decode(String?.self), replyTo: try row[prefix + "reply_to"].decode(String?.self),
            meta: try row[prefix + "meta"].decode(String?.self).map { try Wire.decode(JSONValue.self, from: $0) },
            editedAt: try row[prefix + "edited_at"].decode(Int?.self), deleted: try row[prefix + "deleted"].decode(Bool.self),
            // Most messages have no reactions; skip the decoder for them.
            reactions: reactions == "{}" ? [:] : try Wire.decode([String: Int].self, from: reactions))
    }

    static func room(_ row: PostgresRandomAccessRow) throws -> Room {
        let kindName = try row["kind"].decode(String.self)
        let kind = RoomKind(rawValue: kindName)
        guard kind == .group || kind == .direct else {
            throw StoreError(.unavailable, "unknown room kind \(kindName) in the database")
        }
        return Room(
            id: try row["id"].decode(String.self), name: try row["name"].decode(String.self), kind: kind,
            isPublic: try row["is_public"].decode(Bool.self), createdAt: try row["created_at"].decode(Int.self),
            lastSeq: try row["last_seq"].decode(Int.self), members: try row["member_ids"].decode([String].self))
    }
}

extension PostgresConnection {
    /// Every row of a query, for random access by column name.
    func rows(_ query: PostgresQuery, logger: Logger) async throws -> [PostgresRandomAccessRow] {
        try await self.query(query, logger: logger).collect().map { $0.makeRandomAccess() }
    }
}

/// The most bound parameters of one statement (PostgreSQL's protocol counts them in 16 bits).
let maxBinds = Int(UInt16.max)

extension Array {
    /// Consecutive slices of at most `size` elements, to keep each statement under the bind limit.
    func chunks(ofCount size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}

/// The form of a name compared "without regard to case", as the SQLite backend's (Swift's
/// lowercasing, so both backends agree on every script).
func caseKey(_ name: String) -> String {
    name.lowercased()
}

/// A LIKE pattern (with `\` as escape) matching any text that contains `query` without regard to case.
func containsPattern(_ query: String) -> String {
    var pattern = "%"
    for character in caseKey(query) {
        if character == "%" || character == "_" || character == "\\" { pattern.append("\\") }
        pattern.append(character)
    }
    pattern.append("%")
    return pattern
}

/// A `text[]` parameter whose elements may be NULL, which postgres-nio's arrays cannot hold: the
/// optional columns of a batch of rows bound as one array each (`unnest`), so that a statement's
/// text does not depend on how many rows it writes.
struct NullableTextArray: PostgresNonThrowingEncodable {
    var elements: [String?]

    static var psqlType: PostgresDataType { .textArray }
    static var psqlFormat: PostgresFormat { .binary }

    /// PostgreSQL's binary array form (as postgres-nio writes its own arrays), a length of -1 for NULL.
    func encode<JSONEncoder: PostgresJSONEncoder>(into buffer: inout ByteBuffer, context: PostgresEncodingContext<JSONEncoder>) {
        buffer.writeInteger(elements.isEmpty ? 0 : 1, as: Int32.self)  // dimensions
        buffer.writeInteger(elements.contains(nil) ? 1 : 0, as: Int32.self)  // has NULLs
        buffer.writeInteger(PostgresDataType.text.rawValue)
        guard !elements.isEmpty else { return }
        buffer.writeInteger(Int32(elements.count))  // length of the dimension
        buffer.writeInteger(1, as: Int32.self)  // its lower bound
        for element in elements {
            guard let element else {
                buffer.writeInteger(-1, as: Int32.self)
                continue
            }
            buffer.writeInteger(Int32(element.utf8.count))
            buffer.writeString(element)
        }
    }
}
