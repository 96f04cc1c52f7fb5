import Logging
import Synchronization
import SwitchboardClient
import SwitchboardProtocol

/// What an archiver did, counted across its runs (for tests).
final class ArchiverStatistics: Sendable {
    private let listings = Atomic<Int>(0)
    private let pending = Atomic<Bool>(true)
    /// How many times the bot's rooms were listed again.
    var roomListings: Int { listings.load(ordering: .relaxed) }
    /// Whether a listing is asked for and not yet done.
    var listingPending: Bool { pending.load(ordering: .relaxed) }
    func listedRooms() { listings.add(1, ordering: .relaxed) }
    func listing(pending: Bool) { self.pending.store(pending, ordering: .relaxed) }
}

/// Archives the rooms of one bot connection: events in, transactions out.
///
/// ``observe(_:)`` takes the client's events (never blocks); ``run(client:)`` is the one writer:
/// it reads positions, backfills from the history API, writes batches and retries with backoff
/// while PostgreSQL or the server is away. At start and at every `ready` (each new connection) it
/// lists the bot's rooms again, so every room resumes from its archived position.
final class Archiver: Sendable {
    private struct Tracked {
        var room: Room
        var progress: RoomProgress
    }

    private struct State {
        var rooms: [String: Tracked] = [:]
        /// Rooms of the bot that the configuration leaves out: their messages need no new listing.
        var skipped: Set<String> = []
        var listing = ListingRequests()
        /// Live reaction counts not yet written, by message id (the newest counts win).
        var reactions: [String: ReactionEvent] = [:]
    }

    private let configuration: ArchiveConfiguration
    private let database: ArchiveDatabase
    private let logger: Logger
    private let statistics: ArchiverStatistics
    private let state = Mutex(State())
    private let bell: AsyncStream<Void>
    private let ring: AsyncStream<Void>.Continuation
    /// Live messages kept per room beyond the position; what does not fit is read from history later.
    private var bufferCapacity: Int { configuration.batchSize * 4 }
    private static let reactionCapacity = 10_000

    init(configuration: ArchiveConfiguration, database: ArchiveDatabase, logger: Logger, statistics: ArchiverStatistics = ArchiverStatistics()) {
        self.configuration = configuration
        self.database = database
        self.logger = logger
        self.statistics = statistics
        (bell, ring) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    // MARK: Events

    /// Takes one client event into account.
    func observe(_ event: ClientEvent) {
        let wake: Bool = state.withLock { state in
            func relist() {
                state.listing.request()
                self.statistics.listing(pending: true)
            }
            switch event {
            case .message(let message), .messageSent(let message):
                guard state.rooms[message.roomId] != nil else {
                    if state.skipped.contains(message.roomId) { return false }
                    relist()
                    return true
                }
                state.rooms[message.roomId]?.progress.received(message)
            case .caughtUp(let roomId, let seq):
                state.rooms[roomId]?.progress.serverHas(upTo: seq)
            case .ready:
                relist()
            case .room(let data):
                guard configuration.archives(roomId: data.room.id, name: data.room.name) else { return false }
                if state.rooms[data.room.id] == nil { relist() }
                state.rooms[data.room.id]?.room = data.room
                state.rooms[data.room.id]?.progress.serverHas(upTo: data.room.lastSeq)
            case .member(let change) where change.change == .added:
                relist()
            case .reaction(let reaction):
                guard state.rooms[reaction.roomId] != nil, state.reactions.count < Self.reactionCapacity || state.reactions[reaction.messageId] != nil else { return false }
                state.reactions[reaction.messageId] = reaction
            default:
                return false
            }
            return true
        }
        if wake { ring.yield() }
    }

    // MARK: Writing

    /// Writes until the task is cancelled; errors are logged and retried with backoff (0.5 s doubling to 30 s).
    func run(client: ChatClient) async {
        var prepared = false
        var failures = 0
        var bell = self.bell.makeAsyncIterator()
        while !Task.isCancelled {
            do {
                if !prepared {
                    try await database.prepare(language: configuration.language)
                    prepared = true
                }
                if state.withLock({ $0.listing.isPending }) { try await rescan(client: client) }
                let worked = try await writeOnce(client: client)
                if failures > 0 { logger.info("archiving again", metadata: ["archive.schema": "\(configuration.schema)"]) }
                failures = 0
                if !worked { _ = await bell.next() }
            } catch {
                if Task.isCancelled { return }
                failures += 1
                let delay = Duration.milliseconds(min(500 * (1 << min(failures - 1, 6)), 30_000))
                logger.warning("archiving paused, retrying in \(delay): \(error)", metadata: ["archive.schema": "\(configuration.schema)"])
                try? await Task.sleep(for: delay)
            }
        }
    }

    /// Lists the bot's rooms and the archived positions: what every room resumes from.
    private func rescan(client: ChatClient) async throws {
        statistics.listedRooms()
        let ticket = state.withLock { $0.listing.begin() }
        let summaries = try await client.rooms()
        let positions = try await database.positions()
        let capacity = bufferCapacity
        state.withLock { state in
            state.skipped = Set(summaries.filter { !configuration.archives(roomId: $0.room.id, name: $0.room.name) }.map(\.room.id))
            for summary in summaries where !state.skipped.contains(summary.room.id) {
                var tracked = state.rooms[summary.room.id] ?? Tracked(room: summary.room, progress: RoomProgress(capacity: capacity))
                tracked.room = summary.room
                tracked.progress.loaded(position: positions[summary.room.id] ?? 0)
                tracked.progress.serverHas(upTo: summary.room.lastSeq)
                state.rooms[summary.room.id] = tracked
            }
            state.listing.finish(ticket)
            statistics.listing(pending: state.listing.isPending)
        }
    }

    /// One pass over the rooms with something to do; returns whether anything was written.
    private func writeOnce(client: ChatClient) async throws -> Bool {
        let batchSize = configuration.batchSize
        let steps = state.withLock { state in
            state.rooms.values.map { ($0.room, $0.progress.nextStep(batchSize: batchSize)) }.filter { $0.1 != .idle }
        }
        var worked = false
        for (room, step) in steps {
            switch step {
            case .idle:
                continue
            case .write(let messages):
                try await write(messages, room: room, client: client)
            case .fetch(let after, let limit):
                let messages: [Message]
                do {
                    messages = try await client.history(in: room.id, after: after, limit: limit).messages
                } catch let error as ClientError where !error.isTransient {
                    // No longer a member, or the room is gone: what is archived stays; the room is left.
                    logger.warning("cannot read the history of a room; leaving it: \(error)", metadata: ["switchboard.room": "\(room.id)"])
                    _ = state.withLock { $0.rooms.removeValue(forKey: room.id) }
                    continue
                }
                if messages.isEmpty {
                    state.withLock { $0.rooms[room.id]?.progress.foundNothing(after: after) }
                } else {
                    try await write(messages, room: room, client: client)
                }
            }
            worked = true
        }
        let reactions = state.withLock { state in
            defer { state.reactions = [:] }
            return state.reactions
        }
        for (index, reaction) in reactions.values.enumerated() {
            do {
                try await database.setReactions(reaction.reactions, messageId: reaction.messageId, roomId: reaction.roomId)
            } catch {
                // Put back what was not written, unless a newer count came meanwhile.
                state.withLock { state in
                    for left in reactions.values.dropFirst(index) where state.reactions[left.messageId] == nil { state.reactions[left.messageId] = left }
                }
                throw error
            }
            worked = true
        }
        return worked
    }

    /// Writes messages of one room with their authors and moves the room's position past them.
    private func write(_ messages: [Message], room: Room, client: ChatClient) async throws {
        guard let last = messages.last?.seq else { return }
        var users: [User] = []
        for userId in Set(messages.map(\.userId)).sorted() {
            // An author the server cannot name now is archived by id; a later batch names them.
            if let user = try? await client.user(id: userId) { users.append(user) }
        }
        try await database.write(room: room, messages: messages, users: users, upTo: last)
        state.withLock { $0.rooms[room.id]?.progress.archived(upTo: last) }
    }
}
