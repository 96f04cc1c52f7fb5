import Logging
import Synchronization
import SwitchboardProtocol
import SwitchboardStore

/// The caller of a request: who, and with which token.
public struct Identity: Sendable {
    public var user: User
    public var tokenId: String
    public var tokenExpiresAt: Int?
}

/// The rules of the protocol, shared by the HTTP routes and the WebSocket sessions.
///
/// Every method checks what the caller may do, talks to the store, and tells the hub what
/// changed. Failures are `ProtocolError`s with the contract's codes.
///
/// A class, so that each WebSocket's session holds one reference rather than a copy of the whole
/// configuration (half a kilobyte per idle connection).
final class ChatService: Sendable {
    let configuration: ServerConfiguration
    let store: any ChatStore
    let hub: Hub
    let publisher: Publisher
    let metrics: ServerMetrics
    let messageLimiter: RateLimiter
    let typingLimiter: RateLimiter
    let roomLimiter: RateLimiter
    let joinLimiter: RateLimiter
    /// Messages submitted and not yet answered: the group-commit queue's length.
    let pendingMessages: PendingCount
    let logger: Logger

    init(configuration: ServerConfiguration, store: any ChatStore, hub: Hub, metrics: ServerMetrics, logger: Logger) {
        self.configuration = configuration
        self.store = store
        self.hub = hub
        self.publisher = Publisher(hub: hub, metrics: metrics)
        self.metrics = metrics
        self.messageLimiter = RateLimiter(perSecond: configuration.messagesPerSecond, burst: configuration.messageBurst)
        self.typingLimiter = RateLimiter(perSecond: configuration.typingPerSecond, burst: configuration.typingBurst)
        self.roomLimiter = RateLimiter(perSecond: configuration.roomsPerHour / 3600, burst: max(1, configuration.roomsPerHour))
        self.joinLimiter = RateLimiter(perSecond: configuration.joinsPerSecond, burst: configuration.joinBurst)
        self.pendingMessages = PendingCount()
        self.logger = logger
    }

    // MARK: Sessions

    /// Starts a client's live session, whatever carries it: reads the rooms the user is a member
    /// of and registers `sink` with the hub, which announces the user online on a first session.
    /// - Parameter followsAllRooms: a long-polling session, subscribed to all its user's rooms.
    /// - Returns: the hub's id of the session, for `join`, `leave` and `closeSession`.
    func openSession(_ identity: Identity, sink: any EventSink, followsAllRooms: Bool = false) async throws -> Int {
        let rooms = try await storeCall { try await store.memberRooms(userId: identity.user.id) }
        return hub.register(
            user: identity.user, tokenId: identity.tokenId, tokenExpiresAt: identity.tokenExpiresAt, sink: sink,
            rooms: rooms, followsAllRooms: followsAllRooms, now: WallClock.milliseconds()
        )
    }

    /// Ends a session opened by `openSession`: leaves its rooms and, after the user's last one,
    /// announces them offline. Ending one twice does nothing.
    func closeSession(_ connection: Int) {
        hub.unregister(connection, now: WallClock.milliseconds())
    }

    // MARK: Users

    func searchUsers(_ query: String) async throws -> [User] {
        try await storeCall { try await store.searchUsers(query: query, limit: 50) }
    }

    // MARK: Rooms

    func rooms(_ identity: Identity) async throws -> [RoomSummary] {
        try await storeCall { try await store.rooms(memberId: identity.user.id) }
    }

    func createRoom(_ identity: Identity, _ request: CreateRoomRequest) async throws -> Room {
        let name = try Validation.roomName(request.name, limits: configuration.limits)
        try limit(roomLimiter, identity, "too many rooms created")
        let members = Array(Set(request.members ?? []).subtracting([identity.user.id]))
        let room = try await storeCall {
            try await store.createRoom(NewRoom(name: name, isPublic: request.isPublic ?? false, creatorId: identity.user.id, memberIds: members, now: WallClock.milliseconds()))
        }
        hub.roomCreated(room, now: WallClock.milliseconds())
        return room
    }

    /// A room the caller may read: a member, or anyone for a public room.
    func readableRoom(_ identity: Identity, _ roomId: String) async throws -> Hub.RoomState {
        let room = try await roomState(roomId)
        guard room.room.isPublic || room.members.contains(identity.user.id) else {
            throw ProtocolError(.forbidden, "you are not a member of this private room")
        }
        return room
    }

    /// A room the caller is a member of.
    func memberRoom(_ identity: Identity, _ roomId: String) async throws -> Hub.RoomState {
        let room = try await roomState(roomId)
        try Self.checkMember(identity, room)
        return room
    }

    private static func checkMember(_ identity: Identity, _ room: Hub.RoomState) throws(ProtocolError) {
        guard room.members.contains(identity.user.id) else {
            throw ProtocolError(.forbidden, "you are not a member of this room")
        }
    }

    /// What the hub knows of a room, loaded from the store on first use; `not_found` when there is none.
    func roomState(_ roomId: String) async throws -> Hub.RoomState {
        if let known = hub.room(roomId) { return known }
        guard let room = try await storeCall({ try await store.room(id: roomId) }) else {
            throw ProtocolError(.notFound, "no room \(roomId)")
        }
        hub.remember(room)
        return hub.room(roomId) ?? Hub.RoomState(room: room, members: Set(room.members))
    }

    func addMember(_ identity: Identity, roomId: String, userId: String) async throws -> Room {
        let state = try await roomState(roomId)
        let isSelf = userId == identity.user.id
        guard state.members.contains(identity.user.id) || (isSelf && state.room.isPublic) else {
            throw ProtocolError(.forbidden, isSelf ? "this room is private: a member must add you" : "only members may add others")
        }
        if state.room.kind == .direct, !state.members.contains(userId) {
            throw ProtocolError(.forbidden, "a direct room has exactly two members")
        }
        guard let user = try await storeCall({ try await store.user(id: userId) }) else {
            throw ProtocolError(.notFound, "no user \(userId)")
        }
        if state.members.contains(userId) { return state.room }
        let room = try await storeCall { try await store.addMember(roomId: roomId, userId: userId, now: WallClock.milliseconds()) }
        hub.memberAdded(user, to: room, by: identity.user.id, now: WallClock.milliseconds())
        return room
    }

    func removeMember(_ identity: Identity, roomId: String, userId: String) async throws -> Room {
        let state = try await roomState(roomId)
        if userId != identity.user.id {
            let creator = try await storeCall { try await store.creator(roomId: roomId) }
            guard creator == identity.user.id else {
                throw ProtocolError(.forbidden, "only the room's creator may remove others")
            }
        }
        if state.room.kind == .direct {
            throw ProtocolError(.forbidden, "members of a direct room cannot be removed")
        }
        guard let room = try await storeCall({ try await store.removeMember(roomId: roomId, userId: userId) }) else {
            throw ProtocolError(.notFound, "user \(userId) is not a member of this room")
        }
        let user: User? = userId == identity.user.id ? identity.user : try await storeCall { try await store.user(id: userId) }
        if let user {
            hub.memberRemoved(user, from: room, by: identity.user.id, now: WallClock.milliseconds())
        }
        return room
    }

    func directRoom(_ identity: Identity, with userId: String) async throws -> Room {
        guard userId != identity.user.id else { throw ProtocolError(.invalid, "a direct room needs another user") }
        guard try await storeCall({ try await store.user(id: userId) }) != nil else {
            throw ProtocolError(.notFound, "no user \(userId)")
        }
        let known = hub.room
        let room = try await storeCall { try await store.directRoom(between: identity.user.id, and: userId, now: WallClock.milliseconds()) }
        if known(room.id) == nil { hub.roomCreated(room, now: WallClock.milliseconds()) }
        return room
    }

    // MARK: Messages

    func history(_ identity: Identity, roomId: String, after: Int?, before: Int?, limit: Int) async throws -> MessagesResponse {
        let state = try await readableRoom(identity, roomId)
        let page = try await storeCall { try await store.history(roomId: roomId, after: after, before: before, limit: limit) }
        // Reading the newest page is reading the room.
        if after == nil, before == nil, state.members.contains(identity.user.id), let newest = page.messages.last {
            try await storeCall { try await store.markRead(roomId: roomId, userId: identity.user.id, seq: newest.seq) }
        }
        return MessagesResponse(messages: page.messages, hasMore: page.hasMore)
    }

    /// Checks a message against the room and the sender's rate, before it is stored: the same
    /// rules for WebSocket and HTTP.
    func prepareMessage(_ identity: Identity, roomId: String, _ data: SendMessageData) async throws -> NewMessage {
        _ = try await memberRoom(identity, roomId)
        try limit(messageLimiter, identity, "too many messages")
        if let replyTo = data.replyTo {
            guard let original = try await storeCall({ try await store.message(id: replyTo) }), original.roomId == roomId else {
                throw ProtocolError(.notFound, "replyTo: no message \(replyTo) in this room")
            }
        }
        return try admitMessage(identity, roomId: roomId, data)
    }

    /// `prepareMessage` without waiting, when it needs nothing from the store: the hub knows the
    /// room's members and the message replies to none. Nil when it does need the store.
    func prepareMessageNow(_ identity: Identity, roomId: String, _ data: SendMessageData) throws(ProtocolError) -> NewMessage? {
        guard data.replyTo == nil, let room = hub.room(roomId) else { return nil }
        try Self.checkMember(identity, room)
        try limit(messageLimiter, identity, "too many messages")
        return try admitMessage(identity, roomId: roomId, data)
    }

    /// The last check of a message, so that a slot is taken only by a message that will be submitted.
    private func admitMessage(_ identity: Identity, roomId: String, _ data: SendMessageData) throws(ProtocolError) -> NewMessage {
        guard pendingMessages.take(limit: configuration.maxPendingMessages) else {
            throw ProtocolError(.rateLimited, "the server is busy storing messages; try again in 100 ms", retryAfterMs: 100)
        }
        return NewMessage(
            roomId: roomId, userId: identity.user.id, content: data.content, clientId: data.clientId,
            replyTo: data.replyTo, meta: data.meta, now: WallClock.milliseconds()
        )
    }

    /// Queues a checked message for the next group commit and returns at once, so that a
    /// connection can send its next message without waiting; `reply` gets the ack once the
    /// message is durable and published.
    func submitMessage(_ message: NewMessage, receivedAt: ContinuousClock.Instant, reply: MessageReply) {
        let publisher = self.publisher
        let logger = self.logger
        let pendingMessages = self.pendingMessages
        store.submitAppend([message]) { result in
            pendingMessages.release()
            // Runs in commit order on the store's writer: only queue, so that the next commit
            // starts at once; the publisher keeps this order, so rooms stay in `seq` order.
            let outcome = result.map { $0[0] }.mapError { Self.protocolError(from: $0, logger: logger) }
            publisher.enqueue(Publisher.Item(result: outcome, reply: reply, receivedAt: receivedAt))
        }
    }

    /// Stores a message, publishes it, and returns its ack: `prepareMessage` then `submitMessage`.
    func sendMessage(_ identity: Identity, roomId: String, _ data: SendMessageData, receivedAt: ContinuousClock.Instant) async throws -> MessageAck {
        let message = try await prepareMessage(identity, roomId: roomId, data)
        return try await withCheckedThrowingContinuation { continuation in
            submitMessage(message, receivedAt: receivedAt, reply: .callback { continuation.resume(with: $0) })
        }
    }

    func typing(_ identity: Identity, roomId: String, isTyping: Bool) async throws {
        _ = try await memberRoom(identity, roomId)
        try limit(typingLimiter, identity, "too many typing indicators")
        hub.typing(roomId: roomId, userId: identity.user.id, isTyping: isTyping, now: WallClock.milliseconds())
    }

    func react(_ identity: Identity, roomId: String, _ data: ReactionData) async throws -> ReactionAck {
        _ = try await memberRoom(identity, roomId)
        // Reactions share the messages' budget: each is a durable write and an event to the room.
        try limit(messageLimiter, identity, "too many messages and reactions")
        guard let message = try await storeCall({ try await store.message(id: data.messageId) }), message.roomId == roomId else {
            throw ProtocolError(.notFound, "no message \(data.messageId) in this room")
        }
        if data.action == .add, message.reactions[data.reaction] == nil, message.reactions.count >= configuration.maxReactionsPerMessage {
            throw ProtocolError(.forbidden, "this message has \(message.reactions.count) different reactions, the most allowed; add one of those")
        }
        let outcome = try await storeCall {
            try await store.react(messageId: data.messageId, userId: identity.user.id, reaction: data.reaction, action: data.action, now: WallClock.milliseconds())
        }
        if outcome.changed {
            let event = ReactionEventData(messageId: data.messageId, reaction: data.reaction, action: data.action, reactions: outcome.reactions)
            hub.reaction(roomId: roomId, userId: identity.user.id, data: event, now: WallClock.milliseconds())
        }
        return ReactionAck(messageId: data.messageId, reactions: outcome.reactions)
    }

    // MARK: Joining

    /// The room's members online and typing; members only.
    func presence(_ identity: Identity, roomId: String) async throws -> RoomPresence {
        hub.presence(of: try await memberRoom(identity, roomId))
    }

    /// Takes a token from `limiter` for the caller, or throws `rate_limited`.
    private func limit(_ limiter: RateLimiter, _ identity: Identity, _ what: String) throws(ProtocolError) {
        if case .limited(let wait) = limiter.take(identity.user.id) {
            throw ProtocolError(.rateLimited, "\(what); try again in \(wait.milliseconds) ms", retryAfterMs: wait.milliseconds)
        }
    }

    // MARK: Joining

    /// Subscribes a connection to a room: replay after `since`, then the ack, then live events.
    ///
    /// The replay is written as fast as the client reads it, however large; live events of the
    /// room wait in the hub meanwhile, and follow the ack.
    func join(_ identity: Identity, connection: Int, sink: any EventSink, roomId: String, since: Int?, ref: String?) async throws {
        try limit(joinLimiter, identity, "too many joins")
        var state = try await roomState(roomId)
        if !state.members.contains(identity.user.id) {
            guard state.room.isPublic else { throw ProtocolError(.forbidden, "you are not a member of this private room") }
            let room = try await storeCall { try await store.addMember(roomId: roomId, userId: identity.user.id, now: WallClock.milliseconds()) }
            hub.memberAdded(identity.user, to: room, by: identity.user.id, now: WallClock.milliseconds())
            state = hub.room(roomId) ?? state
        }
        var start = hub.beginJoin(connection, roomId: roomId, now: WallClock.milliseconds())
        if start == .unknownRoom {
            state = try await roomState(roomId)
            start = hub.beginJoin(connection, roomId: roomId, now: WallClock.milliseconds())
        }
        guard start == .subscribed else { throw ProtocolError(.forbidden, "you are not a member of this room") }
        let replay: Replay
        do {
            replay = try await storeCall { try await store.replay(roomId: roomId, since: since ?? Int.max, cap: configuration.limits.replayCap) }
            try await storeCall { try await store.markRead(roomId: roomId, userId: identity.user.id, seq: replay.lastSeq) }
            let now = WallClock.milliseconds()
            try await sink.sendPaced(replay.messages.map { OutgoingFrame.messageEvent($0, messageJSON: OutgoingFrame.messageJSON($0), now: now) })
        } catch {
            hub.leave(connection, roomId: roomId, now: WallClock.milliseconds())
            throw error
        }
        var room = hub.room(roomId)?.room ?? state.room
        room.lastSeq = max(room.lastSeq, replay.lastSeq)
        let ack = JoinAck(room: room, lastSeq: replay.lastSeq, replayed: replay.messages.count, truncated: replay.truncated)
        guard hub.completeJoin(connection, roomId: roomId, ack: ack, ref: ref, now: WallClock.milliseconds()) else {
            throw ProtocolError(.forbidden, "you were removed from this room while joining it")
        }
    }

    /// Runs a store call, turning its errors into the protocol's.
    func storeCall<Value>(_ call: () async throws -> Value) async throws -> Value {
        do {
            return try await call()
        } catch {
            throw Self.protocolError(from: error, logger: logger)
        }
    }

    /// The protocol's view of a failure: store errors by their code, anything else `internal`.
    static func protocolError(from error: any Error, logger: Logger) -> ProtocolError {
        switch error {
        case let error as ProtocolError:
            return error
        case let error as StoreError:
            switch error.code {
            case .conflict: return ProtocolError(.conflict, error.message)
            case .notFound: return ProtocolError(.notFound, error.message)
            case .forbidden: return ProtocolError(.forbidden, error.message)
            case .unavailable:
                logger.error("store unavailable", metadata: ["switchboard.error": "\(error)"])
                return ProtocolError(.internal, "the database is unavailable")
            }
        default:
            logger.error("store call failed", metadata: ["switchboard.error": "\(error)"])
            return ProtocolError(.internal, "internal error")
        }
    }
}

/// A count with a ceiling, shared by every connection: how many messages wait for their commit.
final class PendingCount: Sendable {
    private let count = Atomic<Int>(0)

    /// Counts one more unless `limit` are already counted.
    func take(limit: Int) -> Bool {
        var current = count.load(ordering: .relaxed)
        while current < limit {
            let (exchanged, original) = count.compareExchange(expected: current, desired: current + 1, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
    }

    func release() {
        count.subtract(1, ordering: .relaxed)
    }

    var value: Int { count.load(ordering: .relaxed) }
}
