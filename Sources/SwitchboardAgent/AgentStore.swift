import Foundation
import Logging
import NIOCore
import NIOPosix
import SQLiteNIO
import SwitchboardProtocol

/// The agent's SQLite file: every plugin's storage, the bots' handled positions and the schedules.
///
/// One connection; each operation is one statement, so no transaction spans an `await`.
public final class AgentStore: Sendable {
    /// Where the file is.
    public let path: String
    let connection: SQLiteConnection

    private init(path: String, connection: SQLiteConnection) {
        self.path = path
        self.connection = connection
    }

    /// Opens (creating it when missing) the agent's SQLite file and its tables.
    ///
    /// - Throws: ``ConfigurationError`` with code `storage` naming the path and the cause.
    public static func open(path: String, logger: Logger) async throws -> AgentStore {
        let connection: SQLiteConnection
        do {
            let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
            try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            connection = try await SQLiteConnection.open(storage: path == ":memory:" ? .memory : .file(path: path), logger: logger)
        } catch {
            throw ConfigurationError(code: .storage, "cannot open the agent's storage at \(path): \(error); check the folder exists and is writable, or set `storage:`", cause: error)
        }
        let store = AgentStore(path: path, connection: connection)
        do {
            for statement in schema { _ = try await connection.query(statement) }
        } catch {
            try? await connection.close()
            throw ConfigurationError(code: .storage, "cannot prepare the agent's storage at \(path): \(error)", cause: error)
        }
        return store
    }

    /// Closes the file, also from a cancelled task (an agent cancelled after its graceful shutdown
    /// took too long): a cancelled close would leave the connection open.
    public func close() async {
        await Task { try? await connection.close() }.value
    }

    static let schema = [
        "PRAGMA journal_mode = WAL",
        "PRAGMA busy_timeout = 5000",
        """
        CREATE TABLE IF NOT EXISTS plugin_values (
            bot TEXT NOT NULL, plugin TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
            PRIMARY KEY (bot, plugin, key)) WITHOUT ROWID
        """,
        """
        CREATE TABLE IF NOT EXISTS plugin_rows (
            bot TEXT NOT NULL, plugin TEXT NOT NULL, tbl TEXT NOT NULL, id INTEGER NOT NULL, value TEXT NOT NULL,
            PRIMARY KEY (bot, plugin, tbl, id))
        """,
        """
        CREATE TABLE IF NOT EXISTS positions (
            bot TEXT NOT NULL, room TEXT NOT NULL, seq INTEGER NOT NULL,
            PRIMARY KEY (bot, room)) WITHOUT ROWID
        """,
        """
        CREATE TABLE IF NOT EXISTS schedules (
            bot TEXT NOT NULL, plugin TEXT NOT NULL, id TEXT NOT NULL, spec TEXT NOT NULL, payload TEXT,
            next_fire REAL NOT NULL,
            PRIMARY KEY (bot, plugin, id)) WITHOUT ROWID
        """,
    ]

    func query(_ sql: String, _ binds: [SQLiteData] = []) async throws -> [SQLiteRow] {
        do {
            return try await connection.query(sql, binds)
        } catch {
            throw ConfigurationError(code: .storage, "the agent's storage at \(path) failed: \(error)", cause: error)
        }
    }

    // MARK: Positions

    /// The last `seq` the bot handled in each room.
    func positions(bot: String) async throws -> [String: Int] {
        var result: [String: Int] = [:]
        for row in try await query("SELECT room, seq FROM positions WHERE bot = ?", [.text(bot)]) {
            if let room = row.column("room")?.string, let seq = row.column("seq")?.integer { result[room] = seq }
        }
        return result
    }

    /// Records that the bot handled everything of `room` up to `seq` (never moves backwards).
    func setPosition(bot: String, room: String, seq: Int) async throws {
        _ = try await query(
            "INSERT INTO positions (bot, room, seq) VALUES (?, ?, ?) ON CONFLICT (bot, room) DO UPDATE SET seq = max(seq, excluded.seq)",
            [.text(bot), .text(room), .integer(seq)])
    }
}

/// A plugin's persistent data: JSON values by key, and small typed tables, namespaced by bot and
/// plugin in the agent's SQLite file.
///
/// ```swift
/// try await context.storage.set("greeted:\(userId)", true)
/// let count = try await context.storage.get("count", as: Int.self) ?? 0
/// let reminders = context.storage.table("reminders", of: Reminder.self)
/// let id = try await reminders.insert(Reminder(text: "stand up"))
/// ```
public struct PluginStorage: Sendable {
    let store: AgentStore
    let bot: String
    let plugin: String

    /// The value stored under `key`, or nil.
    ///
    /// - Throws: a storage error, or a `DecodingError` when the stored value is not a `Value`.
    public func get<Value: Decodable>(_ key: String, as type: Value.Type = Value.self) async throws -> Value? {
        let rows = try await store.query(
            "SELECT value FROM plugin_values WHERE bot = ? AND plugin = ? AND key = ?", [.text(bot), .text(plugin), .text(key)])
        guard let text = rows.first?.column("value")?.string else { return nil }
        return try JSONDecoder().decode(Value.self, from: Data(text.utf8))
    }

    /// Stores `value` under `key`, replacing what was there.
    public func set<Value: Encodable>(_ key: String, _ value: Value) async throws {
        let text = String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
        _ = try await store.query(
            "INSERT INTO plugin_values (bot, plugin, key, value) VALUES (?, ?, ?, ?) ON CONFLICT (bot, plugin, key) DO UPDATE SET value = excluded.value",
            [.text(bot), .text(plugin), .text(key), .text(text)])
    }

    /// Removes `key`; true when it was there.
    @discardableResult
    public func remove(_ key: String) async throws -> Bool {
        let rows = try await store.query(
            "DELETE FROM plugin_values WHERE bot = ? AND plugin = ? AND key = ? RETURNING key", [.text(bot), .text(plugin), .text(key)])
        return !rows.isEmpty
    }

    /// The keys that start with `prefix` (compared scalar by scalar), sorted.
    public func keys(prefix: String = "") async throws -> [String] {
        // SQLite's substr counts Unicode scalars, not Swift's Characters ("👍🏽" is one Character, two scalars).
        let rows = try await store.query(
            "SELECT key FROM plugin_values WHERE bot = ? AND plugin = ? AND substr(key, 1, ?) = ? ORDER BY key",
            [.text(bot), .text(plugin), .integer(prefix.unicodeScalars.count), .text(prefix)])
        return rows.compactMap { $0.column("key")?.string }
    }

    /// Adds `amount` to the integer under `key` (0 when missing) and returns the new value, in one statement.
    @discardableResult
    public func increment(_ key: String, by amount: Int = 1) async throws -> Int {
        let rows = try await store.query(
            """
            INSERT INTO plugin_values (bot, plugin, key, value) VALUES (?, ?, ?, ?)
            ON CONFLICT (bot, plugin, key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + ? AS TEXT)
            RETURNING value
            """,
            [.text(bot), .text(plugin), .text(key), .text(String(amount)), .integer(amount)])
        return rows.first?.column("value")?.string.flatMap { Int($0) } ?? amount
    }

    /// A small table of `Row` values, each with an integer id.
    public func table<Row: Codable & Sendable>(_ name: String, of type: Row.Type = Row.self) -> StorageTable<Row> {
        StorageTable(storage: self, name: name)
    }
}

/// A small typed table of a plugin: rows of one `Codable` type, each with an id, kept as JSON.
public struct StorageTable<Row: Codable & Sendable>: Sendable {
    let storage: PluginStorage
    /// The table's name.
    public let name: String

    private var scope: [SQLiteData] { [.text(storage.bot), .text(storage.plugin), .text(name)] }

    /// Adds a row and returns its id (one more than the largest so far).
    @discardableResult
    public func insert(_ row: Row) async throws -> Int {
        let text = String(decoding: try JSONEncoder().encode(row), as: UTF8.self)
        let rows = try await storage.store.query(
            """
            INSERT INTO plugin_rows (bot, plugin, tbl, id, value)
            SELECT ?1, ?2, ?3, coalesce(max(id), 0) + 1, ?4 FROM plugin_rows WHERE bot = ?1 AND plugin = ?2 AND tbl = ?3
            RETURNING id
            """,
            scope + [.text(text)])
        return rows.first?.column("id")?.integer ?? 0
    }

    /// Replaces (or adds) the row with `id`.
    public func update(_ id: Int, _ row: Row) async throws {
        let text = String(decoding: try JSONEncoder().encode(row), as: UTF8.self)
        _ = try await storage.store.query(
            "INSERT OR REPLACE INTO plugin_rows (bot, plugin, tbl, id, value) VALUES (?, ?, ?, ?, ?)", scope + [.integer(id), .text(text)])
    }

    /// The row with `id`, or nil.
    public func get(_ id: Int) async throws -> Row? {
        let rows = try await storage.store.query(
            "SELECT value FROM plugin_rows WHERE bot = ? AND plugin = ? AND tbl = ? AND id = ?", scope + [.integer(id)])
        guard let text = rows.first?.column("value")?.string else { return nil }
        return try JSONDecoder().decode(Row.self, from: Data(text.utf8))
    }

    /// Every row with its id, in id order.
    public func all() async throws -> [(id: Int, row: Row)] {
        let rows = try await storage.store.query(
            "SELECT id, value FROM plugin_rows WHERE bot = ? AND plugin = ? AND tbl = ? ORDER BY id", scope)
        return try rows.compactMap { row in
            guard let id = row.column("id")?.integer, let text = row.column("value")?.string else { return nil }
            return (id, try JSONDecoder().decode(Row.self, from: Data(text.utf8)))
        }
    }

    /// Removes the row with `id`; true when it was there.
    @discardableResult
    public func delete(_ id: Int) async throws -> Bool {
        let rows = try await storage.store.query(
            "DELETE FROM plugin_rows WHERE bot = ? AND plugin = ? AND tbl = ? AND id = ? RETURNING id", scope + [.integer(id)])
        return !rows.isEmpty
    }
}
