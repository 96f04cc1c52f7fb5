import Foundation
import Logging
import Synchronization
import SwitchboardAgent
import SwitchboardClient
import SwitchboardProtocol

/// The archive bridge as an agent plugin: name it `postgres-archive` in a bot's plugins.
///
/// ```swift
/// let agent = Agent(configuration: configuration, plugins: [PostgresArchivePlugin.factory], …)
/// ```
///
/// Every message of the rooms the bot follows (or of ``ArchiveConfiguration/rooms``) is written
/// into the archive's schema, in batches, each with the room's position in the same transaction;
/// at start and after every reconnection each room resumes from its position over the history
/// API. `!search QUERY` finds messages of the rooms the asker is a member of (asked of the server)
/// and answers in a direct message. With a retention, a scheduled job deletes old messages.
public struct PostgresArchivePlugin: Plugin {
    /// The factory that makes the plugin from its YAML `config`.
    public static let factory = PluginFactory("postgres-archive", configuration: ArchiveConfiguration.self) { PostgresArchivePlugin(configuration: $0) }

    public var name: String { "postgres-archive" }

    /// The configuration.
    public let configuration: ArchiveConfiguration
    private let logger: Logger
    /// The database of the running connection, for commands and schedules.
    private let current = DatabaseHolder()
    /// What the archiver did, for tests.
    let statistics = ArchiverStatistics()
    static let retentionJob = "retention"

    /// An archive; it connects when the agent runs it.
    public init(configuration: ArchiveConfiguration, logger: Logger = Logger(label: "switchboard.archive")) {
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "archive.schema"] = "\(configuration.schema)"
        self.logger = logger
    }

    public var commands: [Command] {
        [
            Command(
                "search", help: "Searches the archive of the rooms you are a member of: words, \"a phrase\", or, -word. Answers in a direct message.",
                arguments: [.text("query", help: "what to look for")]
            ) { call, context in
                try await search(call, context: context)
            }
        ]
    }

    public func setUp(context: PluginContext) async throws {
        let retention = configuration.retention
        if retention.isEnabled {
            try await context.schedules.set(Self.retentionJob, .every(.seconds(retention.everyMinutes * 60)))
        } else {
            _ = try await context.schedules.cancel(Self.retentionJob)
        }
    }

    public func run(context: PluginContext) async throws {
        // A pool per run: postgres-nio's client runs once, and `run` is started again after a failure.
        let database = try ArchiveDatabase(url: configuration.url, schema: configuration.schema, logger: logger)
        let archiver = Archiver(configuration: configuration, database: database, logger: logger, statistics: statistics)
        let events = context.client.events()
        // The pool stops once the archiver and the commands no longer use it (a graceful shutdown
        // of the agent stops neither it nor a write under way: see `withPool`).
        await database.withPool {
            current.set(database)
            await withDiscardingTaskGroup { group in
                group.addTask {
                    for await event in events { archiver.observe(event) }
                }
                // Returns when the bot stops (the task is cancelled).
                await archiver.run(client: context.client)
                group.cancelAll()
            }
            await current.clear()
        }
    }

    public func onSchedule(_ job: ScheduledJob, context: PluginContext) async throws {
        guard job.id == Self.retentionJob else { return }
        _ = try await current.withDatabase { database in try await applyRetention(database: database, now: context.now) }
    }

    /// Deletes from each archived room the messages older than its maximum age.
    func applyRetention(database: ArchiveDatabase, now: Date) async throws {
        for room in try await database.rooms() {
            guard let days = configuration.retention.maxAgeDays(roomId: room.id, name: room.name) else { continue }
            let deleted = try await database.deleteMessages(roomId: room.id, before: now.addingTimeInterval(-Double(days) * 86_400))
            if deleted > 0 { logger.info("retention deleted \(deleted) messages", metadata: ["switchboard.room": "\(room.id)", "archive.maxAgeDays": "\(days)"]) }
        }
    }

    private func search(_ call: CommandCall, context: PluginContext) async throws {
        let asker = call.message.userId
        let query = call.string("query") ?? ""
        let found = try await current.withDatabase { database in
            // Membership as the server sees it now, not as the archive remembers it.
            var allowed: [String] = []
            for room in try await database.rooms() {
                if let live = try? await context.client.room(room.id), live.members.contains(asker) { allowed.append(room.id) }
            }
            return Self.describe(try await database.search(SearchQuery(text: query, limit: 5, onlyRooms: allowed)), query: query)
        }
        let text = found ?? "The archive is not connected to its database yet; try again in a moment."
        // Results of private rooms never go to a room where others would read them.
        if call.message.isDirect {
            try await context.reply(text)
        } else {
            try await context.sendDirect(text, to: asker)
        }
    }

    /// The answer to `!search`: one line per hit, best first.
    static func describe(_ hits: [SearchHit], query: String) -> String {
        guard !hits.isEmpty else { return "Nothing found for \"\(query)\" in your rooms." }
        let lines = hits.map { hit in
            let date = Date(timeIntervalSince1970: Double(hit.createdAt) / 1000).formatted(.iso8601.year().month().day())
            // One line per hit, whatever the message's lines.
            let snippet = hit.snippet.split(whereSeparator: \.isNewline).joined(separator: " ")
            return "#\(hit.roomName) · \(hit.username) · \(date): \(snippet)"
        }
        return (["Found for \"\(query)\":"] + lines).joined(separator: "\n")
    }
}

/// The database of the running archive, if it runs, and how many commands use it: the pool
/// stops only once they are done (a query on a stopped pool would wait for ever).
final class DatabaseHolder: Sendable {
    private struct State {
        var database: ArchiveDatabase?
        var users = 0
        var idle: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    func set(_ database: ArchiveDatabase) { state.withLock { $0.database = database } }

    /// Runs `body` with the running database, which stays running meanwhile; `nil` when none runs.
    func withDatabase<Result: Sendable>(_ body: (ArchiveDatabase) async throws -> Result) async throws -> Result? {
        let database = state.withLock { state -> ArchiveDatabase? in
            guard let database = state.database else { return nil }
            state.users += 1
            return database
        }
        guard let database else { return nil }
        defer { release() }
        return try await body(database)
    }

    /// Takes the database away from new users; returns once those using it are done.
    func clear() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                state.database = nil
                if state.users == 0 { return true }
                state.idle.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    private func release() {
        let waiting = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.users -= 1
            guard state.users == 0 else { return [] }
            defer { state.idle = [] }
            return state.idle
        }
        for continuation in waiting { continuation.resume() }
    }
}
