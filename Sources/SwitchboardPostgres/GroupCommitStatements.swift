import PostgresNIO
import SwitchboardProtocol
import SwitchboardStore

// The three statements of a group commit, prepared once per connection (postgres-nio keeps them by
// name), so that a commit does not parse and plan them again: their text is the same for every
// batch, each column of rows bound as one array.

/// Locks the batch's rooms, in id order, and reads their newest `seq`.
struct LockRooms: PostgresPreparedStatement {
    static let sql = "SELECT id, last_seq FROM rooms WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE"
    typealias Row = (String, Int)

    var roomIds: [String]

    func makeBindings() -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 1)
        bindings.append(roomIds)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row {
        try row.decode(Row.self)
    }
}

/// The stored messages with the batch's idempotency keys.
///
/// One probe of `messages_client_key` per key, whatever the statistics: a prepared statement keeps
/// the generic plan it made first, and on a new database (an empty `messages`, not yet analysed) a
/// plain join was planned as a hash join over a sequential scan of `messages`, then kept while the
/// table grew (14.7 ms a commit at 80,000 messages, most of PostgreSQL's time). A lateral subquery
/// with `LIMIT 1` is planned as an index probe per key even on an empty table.
struct FindRepeats: PostgresPreparedStatement {
    static let sql = """
        SELECT \(Columns.message("m"))
        FROM unnest($1::text[], $2::text[], $3::text[]) AS wanted(room_id, user_id, client_id)
        CROSS JOIN LATERAL (
            SELECT * FROM messages stored
            WHERE stored.room_id = wanted.room_id AND stored.user_id = wanted.user_id AND stored.client_id = wanted.client_id
            LIMIT 1
        ) m
        """
    typealias Row = Message

    var keys: [ClientKey]

    func makeBindings() -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 3)
        bindings.append(keys.map(\.roomId))
        bindings.append(keys.map(\.userId))
        bindings.append(keys.map(\.clientId))
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row {
        try Decode.message(row.makeRandomAccess())
    }
}

/// A plan's messages, the rooms' newest `seq` and the senders' read markers, in one statement.
struct WritePlan: PostgresPreparedStatement {
    static let sql = """
        WITH inserted AS (
            INSERT INTO messages (room_id, seq, id, user_id, content, created_at, client_id, reply_to, meta)
            SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[], $9::text[])
        ), numbered AS (
            UPDATE rooms SET last_seq = changed.last_seq
            FROM unnest($10::text[], $11::bigint[]) AS changed(id, last_seq)
            WHERE rooms.id = changed.id
        )
        UPDATE members SET read_seq = sent.seq
        FROM unnest($12::text[], $13::text[], $14::bigint[]) AS sent(room_id, user_id, seq)
        WHERE members.room_id = sent.room_id AND members.user_id = sent.user_id AND members.read_seq < sent.seq
        """
    typealias Row = ()

    var plan: AppendPlan

    func makeBindings() throws -> PostgresBindings {
        let messages = plan.newMessages
        let changed = Array(plan.changedRooms)
        let markers = plan.readMarkers
        var bindings = PostgresBindings(capacity: 14)
        bindings.append(messages.map(\.roomId))
        bindings.append(messages.map(\.seq))
        bindings.append(messages.map(\.id))
        bindings.append(messages.map(\.userId))
        bindings.append(messages.map(\.content))
        bindings.append(messages.map(\.createdAt))
        bindings.append(NullableTextArray(elements: messages.map(\.clientId)))
        bindings.append(NullableTextArray(elements: messages.map(\.replyTo)))
        bindings.append(NullableTextArray(elements: try messages.map { message in try message.meta.map { try Wire.encodeString($0) } }))
        bindings.append(changed)
        bindings.append(changed.map { plan.lastSeqs[$0] ?? 0 })
        bindings.append(markers.map(\.roomId))
        bindings.append(markers.map(\.userId))
        bindings.append(markers.map(\.seq))
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row {}
}
