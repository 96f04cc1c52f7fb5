import Logging
import SQLiteNIO
import SwitchboardStore

/// The tables, and the connection settings every connection needs.
enum Schema {
    /// Migration `n` (from 0) brings a database from `user_version` n to n + 1. Append new ones;
    /// never edit a shipped one, because databases out there already ran it.
    static let migrations: [[String]] = [
        [
            """
            CREATE TABLE users (
                id TEXT PRIMARY KEY,
                username TEXT NOT NULL,
                username_key TEXT NOT NULL UNIQUE,
                display_name TEXT NOT NULL,
                display_name_key TEXT NOT NULL,
                is_bot INTEGER NOT NULL DEFAULT 0,
                password_hash TEXT,
                created_at INTEGER NOT NULL
            ) STRICT
            """,
            """
            CREATE TABLE tokens (
                id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL REFERENCES users (id),
                hash BLOB NOT NULL UNIQUE,
                name TEXT NOT NULL,
                kind TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                expires_at INTEGER,
                revoked_at INTEGER
            ) STRICT
            """,
            "CREATE INDEX tokens_user_id ON tokens (user_id)",
            "CREATE INDEX tokens_revoked_at ON tokens (revoked_at)",
            """
            CREATE TABLE rooms (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                name_key TEXT NOT NULL,
                kind TEXT NOT NULL CHECK (kind IN ('group', 'direct')),
                is_public INTEGER NOT NULL DEFAULT 0,
                creator_id TEXT REFERENCES users (id),
                direct_key TEXT UNIQUE,
                created_at INTEGER NOT NULL,
                last_seq INTEGER NOT NULL DEFAULT 0
            ) STRICT
            """,
            "CREATE INDEX rooms_name_key ON rooms (name_key)",
            """
            CREATE TABLE members (
                room_id TEXT NOT NULL REFERENCES rooms (id),
                user_id TEXT NOT NULL REFERENCES users (id),
                joined_at INTEGER NOT NULL,
                read_seq INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (room_id, user_id)
            ) STRICT, WITHOUT ROWID
            """,
            "CREATE INDEX members_user_id ON members (user_id)",
            """
            CREATE TABLE messages (
                room_id TEXT NOT NULL REFERENCES rooms (id),
                seq INTEGER NOT NULL,
                id TEXT NOT NULL UNIQUE,
                user_id TEXT NOT NULL REFERENCES users (id),
                content TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                client_id TEXT,
                reply_to TEXT,
                meta TEXT,
                edited_at INTEGER,
                deleted INTEGER NOT NULL DEFAULT 0,
                reactions TEXT NOT NULL DEFAULT '{}',
                PRIMARY KEY (room_id, seq)
            ) STRICT, WITHOUT ROWID
            """,
            // client_id first, so that a batch finds its duplicates with one `client_id IN (…)` lookup.
            """
            CREATE UNIQUE INDEX messages_client_id ON messages (client_id, room_id, user_id)
            WHERE client_id IS NOT NULL
            """,
            """
            CREATE TABLE reactions (
                message_id TEXT NOT NULL REFERENCES messages (id),
                reaction TEXT NOT NULL,
                user_id TEXT NOT NULL REFERENCES users (id),
                created_at INTEGER NOT NULL,
                PRIMARY KEY (message_id, reaction, user_id)
            ) STRICT, WITHOUT ROWID
            """,
        ],
        [
            // Unread counts: a member's own messages above their read marker (usually none) are
            // found here instead of by scanning every message above the marker.
            "CREATE INDEX messages_room_user ON messages (room_id, user_id, seq)"
        ],
    ]

    /// WAL lets the readers read while the writer commits.
    static func configureWriter(_ connection: SQLiteConnection, configuration: SQLiteStore.Configuration, logger: Logger) async throws {
        let journalMode = try await connection.query("PRAGMA journal_mode = WAL").first?.column("journal_mode")?.string
        if journalMode?.lowercased() != "wal" {
            logger.warning("SQLite refused WAL mode; readers will wait for the writer", metadata: ["journalMode": "\(journalMode ?? "unknown")"])
        }
        // Pragmas take no bound parameters; these values come from enums and integers, not from users.
        _ = try await connection.query("PRAGMA synchronous = \(configuration.synchronous.rawValue)")
        // Statement journals of multi-row statements go to memory, not to a temporary file.
        _ = try await connection.query("PRAGMA temp_store = MEMORY")
        // 32 MB of page cache instead of SQLite's 2 MB: message ids are random, so each insert
        // touches a random page of the id index, which the small cache re-reads from the OS.
        _ = try await connection.query("PRAGMA cache_size = -32768")
        _ = try await connection.query("PRAGMA foreign_keys = ON")
        _ = try await connection.query("PRAGMA busy_timeout = \(max(configuration.busyTimeoutMilliseconds, 0))")
    }

    /// The connection of group commits: the writer's settings (the file is in WAL mode already).
    static func configureBatchWriter(_ connection: DirectConnection, configuration: SQLiteStore.Configuration) throws {
        try connection.execute("PRAGMA synchronous = \(configuration.synchronous.rawValue)")
        try connection.execute("PRAGMA cache_size = -32768")
        try connection.execute("PRAGMA foreign_keys = ON")
        try connection.execute("PRAGMA busy_timeout = \(max(configuration.busyTimeoutMilliseconds, 0))")
    }

    /// Readers never write; `query_only` turns a mistake into an error instead of a second writer.
    static func configureReader(_ connection: SQLiteConnection, configuration: SQLiteStore.Configuration) async throws {
        _ = try await connection.query("PRAGMA busy_timeout = \(max(configuration.busyTimeoutMilliseconds, 0))")
        _ = try await connection.query("PRAGMA query_only = ON")
    }

    /// Runs the migrations the database lacks, in one transaction, so that two processes opening a
    /// new file at once cannot both create the tables.
    static func migrate(_ connection: SQLiteConnection, logger: Logger) async throws {
        try await SQLiteStore.transaction(on: connection) { connection in
            let version = try await connection.query("PRAGMA user_version").first?.column("user_version")?.integer ?? 0
            guard version <= migrations.count else {
                throw StoreError(
                    .unavailable,
                    "the database has schema version \(version), newer than this program's \(migrations.count); upgrade Switchboard")
            }
            for (index, statements) in migrations.enumerated().dropFirst(version) {
                logger.info("migrating SQLite schema", metadata: ["toVersion": "\(index + 1)"])
                // One statement per query: sqlite-nio runs only the first statement of a string.
                for statement in statements { _ = try await connection.query(statement) }
            }
            if version < migrations.count {
                _ = try await connection.query("PRAGMA user_version = \(migrations.count)")
            }
        }
    }
}
