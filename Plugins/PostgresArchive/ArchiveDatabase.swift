import Foundation
import Logging
import PostgresNIO
import SwitchboardProtocol

/// The archive's tables in a PostgreSQL schema of their own, and every query on them.
///
/// The pool (postgres-nio's `PostgresClient`) runs for as long as ``withDatabase(url:schema:logger:_:)``'s
/// body, or, in the plugin, for as long as its `run`. A write is one transaction: the messages of a
/// room, their reactions, the room, their authors and the room's archived position, so the
/// position never runs ahead of the rows and a repeated write changes nothing.
///
/// ```swift
/// try await ArchiveDatabase.withDatabase(url: url, schema: "switchboard_archive", logger: logger) { archive in
///     for hit in try await archive.search(SearchQuery(text: "deploy failed")) { print(hit.snippet) }
/// }
/// ```
public struct ArchiveDatabase: Sendable {
    /// The database's address.
    public let address: DatabaseAddress
    /// The schema's name.
    public let schema: String
    let client: PostgresClient
    let logger: Logger

    /// A database whose pool must be run (`run()`) while it is used.
    public init(url: String, schema: String = "switchboard_archive", logger: Logger) throws {
        guard Self.isIdentifier(schema) else { throw ArchiveError(.invalid, "\(schema) is not a plain schema name: use lower-case letters, digits and _") }
        self.address = try DatabaseAddress(url: url)
        self.schema = schema
        self.logger = logger
        self.client = PostgresClient(configuration: address.clientConfiguration, backgroundLogger: PoolLogHandler.logger(logger))
    }

    /// Runs the pool until the task is cancelled.
    public func run() async { await client.run() }

    /// Runs `body` while the pool runs in a detached task, started before `body` and stopped after.
    ///
    /// Detached, apart from the caller: postgres-nio's client stops at a service group's graceful
    /// shutdown, which a child task sees the moment it is asked, and a write under way would then
    /// wait for ever.
    func withPool<Result>(_ body: () async throws -> Result) async rethrows -> Result {
        let pool = Task.detached { [client] in await client.run() }
        do {
            let result = try await body()
            pool.cancel()
            await pool.value
            return result
        } catch {
            pool.cancel()
            await pool.value
            throw error
        }
    }

    /// Runs `body` with a database whose pool runs meanwhile.
    public static func withDatabase<Result: Sendable>(
        url: String, schema: String = "switchboard_archive", logger: Logger, _ body: @Sendable (ArchiveDatabase) async throws -> Result
    ) async throws -> Result {
        let database = try ArchiveDatabase(url: url, schema: schema, logger: logger)
        return try await database.withPool { try await body(database) }
    }

    /// Whether `name` can be put in SQL as it is: lower-case letters, digits and `_`, not first a digit.
    public static func isIdentifier(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, !(("0"..."9").contains(first)), name.count <= 63 else { return false }
        return name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
    }

    // MARK: Schema

    /// Migration `n` (from 0) brings the schema from version n to n + 1. Append new ones; never edit
    /// a shipped one. `S` stands for the schema's name. The text search column is not here: its
    /// language is configurable, so ``prepare(language:)`` makes it.
    static let migrations: [[String]] = [
        [
            "CREATE TABLE S.rooms (id text PRIMARY KEY, name text NOT NULL, kind text NOT NULL, is_public boolean NOT NULL, created_at timestamptz NOT NULL)",
            "CREATE TABLE S.users (id text PRIMARY KEY, username text NOT NULL, display_name text NOT NULL, is_bot boolean NOT NULL)",
            """
            CREATE TABLE S.messages (
                room_id text NOT NULL,
                seq bigint NOT NULL,
                id text NOT NULL,
                user_id text NOT NULL,
                content text NOT NULL,
                created_at timestamptz NOT NULL,
                client_id text,
                reply_to text,
                meta jsonb,
                edited_at timestamptz,
                deleted boolean NOT NULL DEFAULT false,
                PRIMARY KEY (room_id, seq)
            )
            """,
            "CREATE INDEX messages_id ON S.messages (id)",
            "CREATE INDEX messages_user_id ON S.messages (user_id)",
            "CREATE INDEX messages_created_at ON S.messages (room_id, created_at)",
            // The bridge a message came through (`meta.bridge`), for filtering and export.
            "CREATE INDEX messages_bridge ON S.messages ((meta -> 'bridge' ->> 'network')) WHERE meta ? 'bridge'",
            "CREATE TABLE S.reactions (message_id text NOT NULL, room_id text NOT NULL, reaction text NOT NULL, count integer NOT NULL, PRIMARY KEY (message_id, reaction))",
            "CREATE TABLE S.positions (room_id text PRIMARY KEY, seq bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())",
            "CREATE TABLE S.settings (key text PRIMARY KEY, value text NOT NULL)",
        ]
    ]

    private func sql(_ text: String) -> PostgresQuery {
        PostgresQuery(unsafeSQL: text.replacingOccurrences(of: "S.", with: "\(schema)."))
    }

    /// Creates the schema or brings it up to date, and makes the text search column in `language`
    /// (remade when the language changed), in one transaction under an advisory lock so that two
    /// agents starting at once cannot both create the tables. Returns the schema version.
    @discardableResult
    public func prepare(language: String) async throws -> Int {
        guard Self.isIdentifier(language) else { throw ArchiveError(.invalid, "\(language) is not a text search configuration name such as english or simple") }
        return try await database("prepare the archive schema \(schema)") {
            try await client.withTransaction(logger: logger) { connection in
                try await connection.query("SELECT pg_advisory_xact_lock(hashtext(\("switchboard_archive:" + schema)))", logger: logger)
                let exists = try await connection.query("SELECT 1 FROM pg_namespace WHERE nspname = \(schema)", logger: logger).collect()
                if exists.isEmpty { try await connection.query(PostgresQuery(unsafeSQL: "CREATE SCHEMA \(schema)"), logger: logger) }
                try await connection.query(sql("CREATE TABLE IF NOT EXISTS S.schema_version (version integer NOT NULL)"), logger: logger)
                let rows = try await connection.query(sql("SELECT coalesce(max(version), 0)::bigint FROM S.schema_version"), logger: logger).collect()
                let current = try rows.first?.decode(Int.self) ?? 0
                guard current <= Self.migrations.count else {
                    throw ArchiveError(.database, "the archive schema \(schema) has version \(current), newer than this program's \(Self.migrations.count); upgrade Switchboard")
                }
                for (index, statements) in Self.migrations.enumerated().dropFirst(current) {
                    logger.info("migrating the archive schema", metadata: ["archive.schema": "\(schema)", "archive.version": "\(index + 1)"])
                    for statement in statements { try await connection.query(sql(statement), logger: logger) }
                }
                if current < Self.migrations.count {
                    try await connection.query(sql("DELETE FROM S.schema_version"), logger: logger)
                    try await connection.query("INSERT INTO \(unescaped: schema).schema_version (version) VALUES (\(Self.migrations.count))", logger: logger)
                }
                let stored = try await connection.query(sql("SELECT value FROM S.settings WHERE key = 'language'"), logger: logger).collect()
                if try stored.first?.decode(String.self) != language {
                    // A generated column's expression is fixed: a new language means a new column (every row re-indexed).
                    let check = try await connection.query("SELECT 1 FROM pg_ts_config WHERE cfgname = \(language)", logger: logger).collect()
                    guard !check.isEmpty else {
                        throw ArchiveError(.invalid, "PostgreSQL has no text search configuration \(language): pick one of those `SELECT cfgname FROM pg_ts_config` lists, such as english or simple")
                    }
                    try await connection.query(sql("ALTER TABLE S.messages DROP COLUMN IF EXISTS search"), logger: logger)
                    try await connection.query(
                        sql("ALTER TABLE S.messages ADD COLUMN search tsvector GENERATED ALWAYS AS (to_tsvector('\(language)'::regconfig, content)) STORED"), logger: logger)
                    try await connection.query(sql("CREATE INDEX messages_search ON S.messages USING gin (search)"), logger: logger)
                    try await connection.query(
                        sql("INSERT INTO S.settings (key, value) VALUES ('language', '\(language)') ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"), logger: logger)
                }
                return Self.migrations.count
            }
        }
    }

    /// Runs `body`, turning PostgreSQL's errors into an ``ArchiveError`` that says what was being done.
    func database<T>(_ doing: String, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as ArchiveError {
            throw error
        } catch let error as PostgresTransactionError {
            if let ours = error.closureError as? ArchiveError { throw ours }
            throw ArchiveError(.database, "cannot \(doing) in PostgreSQL at \(address.description)", cause: error.closureError ?? error.beginError ?? error.commitError ?? error)
        } catch {
            throw ArchiveError(.database, "cannot \(doing) in PostgreSQL at \(address.description)", cause: error)
        }
    }

    // MARK: Writing

    /// The archived position of every room: the highest `seq` up to which it has every message.
    public func positions() async throws -> [String: Int] {
        try await database("read the archived positions") {
            var positions: [String: Int] = [:]
            for try await (room, seq) in try await client.query(sql("SELECT room_id, seq FROM S.positions"), logger: logger).decode((String, Int).self) {
                positions[room] = seq
            }
            return positions
        }
    }

    /// Writes messages of one room in one transaction with their reactions, the room, the authors
    /// known and the room's position (`upTo`, the highest seq the batch covers). Messages already
    /// archived are updated in place (edits, deletions, reactions), never doubled.
    public func write(room: Room, messages: [Message], users: [User], upTo position: Int) async throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        var metas: [String] = []
        for message in messages { metas.append(try message.meta.map { String(decoding: try encoder.encode($0), as: UTF8.self) } ?? "") }
        let reactions = messages.flatMap { message in message.reactions.sorted { $0.key < $1.key }.map { (message.id, $0.key, $0.value) } }
        try await database("archive \(messages.count) messages of room \(room.id)") {
            try await client.withTransaction(logger: logger) { connection in
                try await connection.query(
                    """
                        INSERT INTO \(unescaped: schema).rooms (id, name, kind, is_public, created_at) VALUES (\(room.id), \(room.name), \(room.kind.rawValue), \(room.isPublic), to_timestamp(\(room.createdAt) / 1000.0))
                        ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, is_public = EXCLUDED.is_public
                        """, logger: logger)
                if !users.isEmpty {
                    try await connection.query(
                        """
                            INSERT INTO \(unescaped: schema).users (id, username, display_name, is_bot)
                            SELECT * FROM unnest(\(users.map(\.id)), \(users.map(\.username)), \(users.map(\.displayName)), \(users.map(\.isBot)))
                            ON CONFLICT (id) DO UPDATE SET username = EXCLUDED.username, display_name = EXCLUDED.display_name, is_bot = EXCLUDED.is_bot
                            """, logger: logger)
                }
                if !messages.isEmpty {
                    try await connection.query(
                        """
                            INSERT INTO \(unescaped: schema).messages (room_id, seq, id, user_id, content, created_at, client_id, reply_to, meta, edited_at, deleted)
                            SELECT \(room.id), m.seq, m.id, m.user_id, m.content, to_timestamp(m.created_at / 1000.0), nullif(m.client_id, ''),
                                   nullif(m.reply_to, ''), nullif(m.meta, '')::jsonb, CASE WHEN m.edited_at < 0 THEN NULL ELSE to_timestamp(m.edited_at / 1000.0) END, m.deleted
                            FROM unnest(\(messages.map(\.seq)), \(messages.map(\.id)), \(messages.map(\.userId)), \(messages.map(\.content)),
                                        \(messages.map(\.createdAt)), \(messages.map { $0.clientId ?? "" }), \(messages.map { $0.replyTo ?? "" }), \(metas),
                                        \(messages.map { $0.editedAt ?? -1 }), \(messages.map(\.deleted)))
                                 AS m(seq, id, user_id, content, created_at, client_id, reply_to, meta, edited_at, deleted)
                            ON CONFLICT (room_id, seq) DO UPDATE SET content = EXCLUDED.content, meta = EXCLUDED.meta, edited_at = EXCLUDED.edited_at, deleted = EXCLUDED.deleted
                            WHERE (\(unescaped: schema).messages.content, \(unescaped: schema).messages.meta, \(unescaped: schema).messages.edited_at, \(unescaped: schema).messages.deleted)
                                IS DISTINCT FROM (EXCLUDED.content, EXCLUDED.meta, EXCLUDED.edited_at, EXCLUDED.deleted)
                            """, logger: logger)
                    try await connection.query("DELETE FROM \(unescaped: schema).reactions WHERE message_id = ANY(\(messages.map(\.id)))", logger: logger)
                }
                if !reactions.isEmpty {
                    try await connection.query(
                        """
                            INSERT INTO \(unescaped: schema).reactions (message_id, room_id, reaction, count)
                            SELECT r.message_id, \(room.id), r.reaction, r.count FROM unnest(\(reactions.map(\.0)), \(reactions.map(\.1)), \(reactions.map(\.2))) AS r(message_id, reaction, count)
                            """, logger: logger)
                }
                try await connection.query(
                    """
                        INSERT INTO \(unescaped: schema).positions (room_id, seq) VALUES (\(room.id), \(position))
                        ON CONFLICT (room_id) DO UPDATE SET seq = greatest(\(unescaped: schema).positions.seq, EXCLUDED.seq), updated_at = now()
                        """, logger: logger)
            }
        }
    }

    /// Replaces the reaction counts of one message (a live reaction event carries all of them).
    public func setReactions(_ counts: [String: Int], messageId: String, roomId: String) async throws {
        let sorted = counts.filter { $0.value > 0 }.sorted { $0.key < $1.key }
        try await database("archive the reactions of message \(messageId)") {
            try await client.withTransaction(logger: logger) { connection in
                try await connection.query("DELETE FROM \(unescaped: schema).reactions WHERE message_id = \(messageId)", logger: logger)
                if !sorted.isEmpty {
                    try await connection.query(
                        "INSERT INTO \(unescaped: schema).reactions (message_id, room_id, reaction, count) SELECT \(messageId), \(roomId), r, c FROM unnest(\(sorted.map(\.key)), \(sorted.map(\.value))) AS x(r, c)",
                        logger: logger)
                }
            }
        }
    }

    // MARK: Retention

    /// Deletes a room's messages (and their reactions) created before `cutoff`; returns how many.
    /// The position stays, so they are not archived again.
    @discardableResult
    public func deleteMessages(roomId: String, before cutoff: Date) async throws -> Int {
        try await database("apply retention to room \(roomId)") {
            try await client.withTransaction(logger: logger) { connection in
                try await connection.query(
                    "DELETE FROM \(unescaped: schema).reactions WHERE message_id IN (SELECT id FROM \(unescaped: schema).messages WHERE room_id = \(roomId) AND created_at < \(cutoff))", logger: logger)
                let rows = try await connection.query("WITH gone AS (DELETE FROM \(unescaped: schema).messages WHERE room_id = \(roomId) AND created_at < \(cutoff) RETURNING 1) SELECT count(*)::bigint FROM gone", logger: logger).collect()
                return try rows.first?.decode(Int.self) ?? 0
            }
        }
    }

    /// The archived rooms: id and name.
    public func rooms() async throws -> [(id: String, name: String)] {
        try await database("list the archived rooms") {
            var rooms: [(id: String, name: String)] = []
            for try await (id, name) in try await client.query(sql("SELECT id, name FROM S.rooms ORDER BY name, id"), logger: logger).decode((String, String).self) {
                rooms.append((id, name))
            }
            return rooms
        }
    }

    /// The number of archived messages (of one room, or of all), for tests and `archive` statistics.
    public func messageCount(roomId: String? = nil) async throws -> Int {
        try await database("count the archived messages") {
            let rows = try await client.query("SELECT count(*)::bigint FROM \(unescaped: schema).messages WHERE \(roomId)::text IS NULL OR room_id = \(roomId)", logger: logger).collect()
            return try rows.first?.decode(Int.self) ?? 0
        }
    }
}
