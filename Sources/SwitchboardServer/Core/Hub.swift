import Logging
import NIOCore
import Synchronization
import SwitchboardProtocol

/// Who is connected, to which rooms, and who should see what: the live half of the server.
///
/// The rules live in pure parts, each tested on its own: `RoomSubscribers` (who gets each of a
/// room's events), `PresenceTracker` (who is online),
/// `RoomAttendance` (when join and leave notices are due), `JoinPhase` (a join's held events) and
/// `TypingTimers` (when an indicator lapses). The hub holds them under one lock, drives them, and
/// sends what they call for.
///
/// Everything done under the lock is short and never waits: sinks only queue frames. Publishing under the lock is what keeps every subscriber's view in one
/// order, and a joining connection's replay, ack and live messages free of gaps and repeats.
final class Hub: Sendable {
    private final class Connection {
        let user: User
        let tokenId: String?
        let tokenExpiresAt: Int?
        let sink: any EventSink
        /// The sink and its event loop, for the fan-out.
        let recipient: Recipient
        /// A long-polling session: subscribed to every room of its user, now and later.
        let followsAllRooms: Bool

        init(user: User, tokenId: String?, tokenExpiresAt: Int?, sink: any EventSink, followsAllRooms: Bool) {
            self.user = user
            self.tokenId = tokenId
            self.tokenExpiresAt = tokenExpiresAt
            self.sink = sink
            self.recipient = Recipient(sink)
            self.followsAllRooms = followsAllRooms
        }
    }

    /// What the hub knows of a room: enough to check access and to fill `room` events.
    struct RoomState: Sendable {
        var room: Room
        var members: Set<String>
        var lastMessage: Message?
    }

    private typealias TypingKey = TypingTimers<ContinuousClock>.Key

    private struct State {
        var nextConnectionID = 0
        var connections: [Int: Connection] = [:]
        /// Who is subscribed to which room, and who gets each event.
        var subscribers = RoomSubscribers<OutgoingFrame, Recipient>()
        /// Each user's connections: who is online.
        var presence = PresenceTracker()
        var rooms: [String: RoomState] = [:]
        /// Rooms of users with at least one connection, for presence.
        var userRooms: [String: Set<String>] = [:]
        /// Per room, how many of each user's connections are subscribed: when `join` and `leave`
        /// notices go out.
        var attendance = RoomAttendance()
        /// Per room, the connections of members that are not subscribed: they get `room` events.
        /// Kept up to date so that a message to a room everyone joined costs nothing extra.
        var watchers: [String: Set<Int>] = [:]
        var typing: TypingTimers<ContinuousClock>
        /// Size of `rooms` past which rooms nobody connected follows are dropped.
        var roomCacheSweepAt = 0
    }

    private let state: Mutex<State>
    private let metrics: ServerMetrics
    /// Wakes the typing timers.
    private let clock = ContinuousClock()
    private let maxConnectionsPerUser: Int
    private let roomCacheSize: Int

    init(configuration: ServerConfiguration, metrics: ServerMetrics) {
        self.metrics = metrics
        self.maxConnectionsPerUser = max(1, configuration.maxConnectionsPerUser)
        let roomCacheSize = max(1, configuration.roomCacheSize)
        self.roomCacheSize = roomCacheSize
        self.state = Mutex(State(typing: TypingTimers(expiry: configuration.typingExpiry), roomCacheSweepAt: roomCacheSize))
        metrics.setCensus { [weak self] in
            guard let census = self?.census() else { return [] }
            return [
                ("switchboard_hub_connections", census.connections), ("switchboard_hub_subscriptions", census.subscriptions),
                ("switchboard_hub_users", census.users), ("switchboard_hub_watchers", census.watchers),
                ("switchboard_hub_typing", census.typing), ("switchboard_hub_rooms", census.rooms),
                ("switchboard_hub_room_entries", census.roomEntries),
            ]
        }
    }

    /// What the hub holds, for tests and diagnostics: every count returns to zero (rooms to at
    /// most the cache size) once every connection has closed.
    struct Census: Sendable, Equatable {
        var connections: Int
        var subscriptions: Int
        var users: Int
        var watchers: Int
        var typing: Int
        var rooms: Int
        /// Room entries in the per-room tables other than `rooms`.
        var roomEntries: Int
    }

    func census() -> Census {
        state.withLock { state in
            Census(
                connections: state.connections.count,
                subscriptions: state.subscribers.count,
                users: state.presence.userCount + state.userRooms.count,
                watchers: state.watchers.values.reduce(0) { $0 + $1.count },
                typing: state.typing.count,
                rooms: state.rooms.count,
                roomEntries: state.subscribers.roomCount + state.watchers.count + state.attendance.roomCount
            )
        }
    }

    // MARK: Rooms

    /// The hub's view of a room, when it has one.
    func room(_ roomId: String) -> RoomState? {
        state.withLock { $0.rooms[roomId] }
    }

    /// Remembers a room read from the store, unless a fresher view is already there.
    func remember(_ room: Room) {
        state.withLock { state in
            if state.rooms[room.id] == nil {
                state.rooms[room.id] = RoomState(room: room, members: Set(room.members))
                trimRoomCache(keeping: room.id, state: &state)
            }
        }
    }

    /// Drops the rooms that no connection follows (neither subscribed nor a connected member)
    /// once the cache outgrows its size; they are read from the store again when next needed.
    /// A sweep costs a pass over the cache, so the next one waits until it has doubled.
    private func trimRoomCache(keeping kept: String, state: inout State) {
        guard state.rooms.count > state.roomCacheSweepAt else { return }
        for roomId in Array(state.rooms.keys) where roomId != kept {
            if !state.subscribers.hasSubscribers(roomId), state.watchers[roomId]?.isEmpty ?? true {
                state.rooms[roomId] = nil
                state.watchers[roomId] = nil
                state.attendance.forget(roomId)
            }
        }
        state.roomCacheSweepAt = max(roomCacheSize, 2 * state.rooms.count)
    }

    /// The room's members online, and those typing, for `GET /api/rooms/{id}/presence`.
    func presence(of room: RoomState) -> RoomPresence {
        state.withLock { state in
            let typing = state.typing.typing(in: room.room.id).filter(room.members.contains)
            return RoomPresence(online: state.presence.online(among: room.members), typing: typing)
        }
    }

    /// A room was created: tell its members' connections.
    func roomCreated(_ room: Room, now: Int) {
        state.withLock { state in
            state.rooms[room.id] = RoomState(room: room, members: Set(room.members))
            for member in room.members { addRoom(room.id, toUser: member, now: now, state: &state) }
            sendRoomEvent(room.id, now: now, state: &state)
            trimRoomCache(keeping: room.id, state: &state)
        }
    }

    /// A user became a member of a room, added by `by` (nil: the server or an administrator).
    func memberAdded(_ user: User, to room: Room, by: String?, now: Int) {
        state.withLock { state in
            let known = state.rooms[room.id]
            let members = (known?.members ?? []).union(room.members).union([user.id])
            var updated = room
            updated.members = members.sorted()
            state.rooms[room.id] = RoomState(room: updated, members: members, lastMessage: known?.lastMessage)
            sendMemberEvent(room.id, MemberChangeData(user: user, change: .added, by: by), now: now, state: &state)
            addRoom(room.id, toUser: user.id, now: now, state: &state)
            sendRoomEvent(room.id, now: now, state: &state)
            trimRoomCache(keeping: room.id, state: &state)
        }
    }

    /// A user stopped being a member of a room: the room's subscribers, theirs included, get a
    /// `member` event, then their connections lose the room's events.
    func memberRemoved(_ user: User, from room: Room, by: String?, now: Int) {
        state.withLock { state in
            let known = state.rooms[room.id]
            var members = (known?.members ?? Set(room.members))
            members.remove(user.id)
            var updated = room
            updated.members = members.sorted()
            state.rooms[room.id] = RoomState(room: updated, members: members, lastMessage: known?.lastMessage)
            sendMemberEvent(room.id, MemberChangeData(user: user, change: .removed, by: by), now: now, state: &state)
            state.userRooms[user.id]?.remove(room.id)
            for id in state.presence.connections(of: user.id) {
                unsubscribe(id, from: room.id, now: now, state: &state)
                state.watchers[room.id]?.remove(id)
            }
            if state.watchers[room.id]?.isEmpty ?? false { state.watchers[room.id] = nil }
            sendRoomEvent(room.id, now: now, state: &state)
            trimRoomCache(keeping: room.id, state: &state)
        }
    }

    private func sendMemberEvent(_ roomId: String, _ change: MemberChangeData, now: Int, state: inout State) {
        let frame = encode(Envelope(type: .member, roomId: roomId, data: change, timestamp: now, userId: change.user.id))
        sendToSubscribers(of: roomId, frame, seq: nil, except: nil, state: &state)
    }

    private func addRoom(_ roomId: String, toUser userId: String, now: Int, state: inout State) {
        let connections = state.presence.connections(of: userId)
        guard !connections.isEmpty else { return }
        state.userRooms[userId, default: []].insert(roomId)
        let lastSeq = state.rooms[roomId]?.room.lastSeq ?? 0
        for id in connections where !state.subscribers.isSubscribed(id, to: roomId) {
            state.watchers[roomId, default: []].insert(id)
            if state.connections[id]?.followsAllRooms == true {
                subscribe(id, to: roomId, as: .live(lastSeq: lastSeq), now: now, state: &state)
            }
        }
    }

    // MARK: Connections

    /// Registers a connection of `user`, member of `rooms`; announces the user online if it is their first.
    /// - Returns: the connection's id.
    func register(
        user: User, tokenId: String?, tokenExpiresAt: Int?, sink: any EventSink, rooms: [Room],
        followsAllRooms: Bool = false, now: Int
    ) -> Int {
        let id = state.withLock { state in
            state.nextConnectionID += 1
            let id = state.nextConnectionID
            for room in rooms where state.rooms[room.id] == nil {
                state.rooms[room.id] = RoomState(room: room, members: Set(room.members))
            }
            // The list was read before this lock: a removal since then shows here, and wins.
            let memberRooms = rooms.filter { state.rooms[$0.id]?.members.contains(user.id) ?? true }
            if !followsAllRooms { closeOldestConnection(of: user.id, state: state) }
            state.connections[id] = Connection(
                user: user, tokenId: tokenId, tokenExpiresAt: tokenExpiresAt, sink: sink, followsAllRooms: followsAllRooms
            )
            let presence = state.presence.connected(id, user: user.id)
            state.userRooms[user.id] = Set(memberRooms.map(\.id))
            for room in memberRooms { state.watchers[room.id, default: []].insert(id) }
            if let presence { sendPresence(of: user.id, presence, now: now, state: &state) }
            if followsAllRooms {
                for room in memberRooms {
                    subscribe(id, to: room.id, as: .live(lastSeq: state.rooms[room.id]?.room.lastSeq ?? room.lastSeq), now: now, state: &state)
                }
            }
            return id
        }
        metrics.connections.increment()
        return id
    }

    /// Past the cap of WebSocket connections per user, closes the user's oldest one: a client
    /// that reconnects keeps working while the connection it lost times out.
    private func closeOldestConnection(of userId: String, state: State) {
        let sockets = state.presence.connections(of: userId).filter { state.connections[$0]?.followsAllRooms == false }
        guard sockets.count >= maxConnectionsPerUser, let oldest = sockets.min(), let connection = state.connections[oldest] else { return }
        connection.sink.close(.tooManyConnections(limit: maxConnectionsPerUser))
    }

    /// Removes a connection; announces leaves and, after the user's last connection, offline.
    func unregister(_ id: Int, now: Int) {
        let removed = state.withLock { state -> Bool in
            guard let connection = state.connections[id] else { return false }
            for roomId in state.subscribers.rooms(of: id) {
                unsubscribe(id, from: roomId, now: now, state: &state)
            }
            for roomId in state.userRooms[connection.user.id] ?? [] {
                state.watchers[roomId]?.remove(id)
                if state.watchers[roomId]?.isEmpty ?? false { state.watchers[roomId] = nil }
            }
            state.connections[id] = nil
            if let presence = state.presence.disconnected(id, user: connection.user.id) {
                sendPresence(of: connection.user.id, presence, now: now, state: &state)
                state.userRooms[connection.user.id] = nil
            }
            trimRoomCache(keeping: "", state: &state)
            return true
        }
        if removed { metrics.connections.decrement() }
    }

    /// Closes the connections that use any of these tokens.
    func close(tokens: Set<String>, _ end: SessionEnd) {
        let sinks = state.withLock { state in
            state.connections.values.filter { $0.tokenId.map(tokens.contains) ?? false }.map(\.sink)
        }
        sinks.forEach { $0.close(end) }
    }

    /// Closes the connections whose token has expired at `now`.
    func closeExpired(now: Int) {
        let sinks = state.withLock { state in
            state.connections.values.filter { $0.tokenExpiresAt.map { $0 <= now } ?? false }.map(\.sink)
        }
        sinks.forEach { $0.close(.tokenExpired) }
    }

    /// Closes every connection, for shutdown.
    func closeAll(_ end: SessionEnd) {
        let sinks = state.withLock { $0.connections.values.map(\.sink) }
        sinks.forEach { $0.close(end) }
    }

    /// Whether a connection is subscribed to a room (joined or joining).
    func isSubscribed(_ id: Int, to roomId: String) -> Bool {
        state.withLock { $0.subscribers.isSubscribed(id, to: roomId) }
    }

    // MARK: Joining and leaving

    /// How `beginJoin` went.
    enum JoinStart: Equatable {
        case subscribed
        /// The user is not a member (any more): a removal came first.
        case notMember
        /// The room is not in the cache: load it and try again.
        case unknownRoom
    }

    /// Subscribes a connection to a room, holding live events back until `completeJoin`.
    /// Membership is checked here, under the lock that removals take, so that a removal racing
    /// the join either comes first (and the join is refused) or ends the new subscription.
    func beginJoin(_ id: Int, roomId: String, now: Int) -> JoinStart {
        state.withLock { state in
            guard let room = state.rooms[roomId] else { return .unknownRoom }
            guard let connection = state.connections[id], room.members.contains(connection.user.id) else { return .notMember }
            subscribe(id, to: roomId, as: .joining(), now: now, state: &state)
            return .subscribed
        }
    }

    /// Sends the ack (with the members online now), then the events held back that the replay
    /// did not cover. False when the subscription ended meanwhile (the user was removed).
    func completeJoin(_ id: Int, roomId: String, ack: JoinAck, ref: String?, now: Int) -> Bool {
        state.withLock { state in
            guard state.connections[id] != nil, let joined = state.subscribers.completeJoin(id, in: roomId, replayedThrough: ack.lastSeq) else { return false }
            var ack = ack
            ack.online = state.presence.online(among: state.rooms[roomId]?.members ?? Set(ack.room.members))
            var fanOut = FanOut()
            fanOut.add(encode(Envelope(type: .ack, roomId: roomId, data: ack, timestamp: now, ref: ref)), to: joined.target)
            for frame in joined.held {
                fanOut.add(frame, to: joined.target)
            }
            fanOut.send()
            return true
        }
    }

    /// Unsubscribes a connection from a room.
    func leave(_ id: Int, roomId: String, now: Int) {
        state.withLock { state in
            unsubscribe(id, from: roomId, now: now, state: &state)
        }
    }

    private func subscribe(_ id: Int, to roomId: String, as phase: JoinPhase<OutgoingFrame>, now: Int, state: inout State) {
        guard let connection = state.connections[id] else { return }
        let user = connection.user
        guard state.subscribers.subscribe(id, user: user.id, target: connection.recipient, to: roomId, phase: phase) else { return }
        state.watchers[roomId]?.remove(id)
        if state.attendance.subscribed(user: user.id, to: roomId) {
            let frame = encode(Envelope(type: .join, roomId: roomId, data: MemberData(user: user), timestamp: now, userId: user.id))
            sendToSubscribers(of: roomId, frame, seq: nil, except: user.id, state: &state)
        }
    }

    private func unsubscribe(_ id: Int, from roomId: String, now: Int, state: inout State) {
        guard let connection = state.connections[id], state.subscribers.unsubscribe(id, from: roomId) else { return }
        let user = connection.user
        if state.rooms[roomId]?.members.contains(user.id) ?? false {
            state.watchers[roomId, default: []].insert(id)
        }
        if state.attendance.unsubscribed(user: user.id, from: roomId) {
            let frame = encode(Envelope(type: .leave, roomId: roomId, data: MemberData(user: user), timestamp: now, userId: user.id))
            sendToSubscribers(of: roomId, frame, seq: nil, except: user.id, state: &state)
        }
    }

    // MARK: Publishing

    /// A stored message to publish, with its encoded event, and the ack for its sender when the
    /// hub is to send it.
    struct Publication: Sendable {
        var message: Message
        /// The `message` event; nil for a duplicate, which is acked but not published again.
        var event: OutgoingFrame?
        var ack: (frame: OutgoingFrame, sink: any EventSink)?
    }

    /// Delivers stored messages to their rooms' subscribers, a `room` event to members who are
    /// connected but not subscribed, and each ack after its message's event. Call in `seq` order.
    ///
    /// A whole batch goes out in one task per event loop that writes every frame to its sockets
    /// and flushes each socket once.
    func publish(_ publications: [Publication], now: Int) {
        let deliveries = state.withLock { state -> Int in
            var fanOut = FanOut()
            var deliveries = 0
            for publication in publications {
                if let event = publication.event {
                    let message = publication.message
                    if let index = state.rooms.index(forKey: message.roomId) {
                        state.rooms.values[index].room.lastSeq = max(state.rooms.values[index].room.lastSeq, message.seq)
                        state.rooms.values[index].lastMessage = message
                    }
                    deliveries += addSubscribers(of: message.roomId, event, seq: message.seq, except: nil, to: &fanOut, state: &state)
                    addRoomEvent(message.roomId, now: now, to: &fanOut, state: &state)
                }
                if let ack = publication.ack {
                    fanOut.add(ack.frame, to: Recipient(ack.sink))
                }
            }
            fanOut.send()
            return deliveries
        }
        metrics.delivered.increment(by: Int64(deliveries))
    }

    /// Sends `typing` to the room's other users, and arranges the automatic `isTyping: false`.
    func typing(roomId: String, userId: String, isTyping: Bool, now: Int) {
        let key = TypingKey(roomId: roomId, userId: userId)
        let deadline = state.withLock { state in
            let deadline = state.typing.typing(key, isTyping: isTyping, now: clock.now)
            let frame = encode(Envelope(type: .typing, roomId: roomId, data: TypingData(isTyping: isTyping), timestamp: now, userId: userId))
            sendToSubscribers(of: roomId, frame, seq: nil, except: userId, state: &state)
            return deadline
        }
        guard let deadline else { return }
        // Not cancelled when the indicator is renewed or stopped: the timers ignore a stale
        // wake-up, and the typing rate limit bounds how many wait.
        Task { [self, clock] in
            try? await clock.sleep(until: deadline)
            typingLapsed(key, deadline: deadline)
        }
    }

    private func typingLapsed(_ key: TypingKey, deadline: ContinuousClock.Instant) {
        state.withLock { state in
            guard state.typing.lapse(key, deadline: deadline) else { return }
            let frame = encode(Envelope(
                type: .typing, roomId: key.roomId, data: TypingData(isTyping: false), timestamp: WallClock.milliseconds(), userId: key.userId
            ))
            sendToSubscribers(of: key.roomId, frame, seq: nil, except: key.userId, state: &state)
        }
    }

    /// Sends a `reaction` to every subscriber of the room, the reactor's connections included.
    func reaction(roomId: String, userId: String, data: ReactionEventData, now: Int) {
        let frame = encode(Envelope(type: .reaction, roomId: roomId, data: data, timestamp: now, userId: userId))
        state.withLock { state in
            _ = sendToSubscribers(of: roomId, frame, seq: nil, except: nil, state: &state)
        }
    }

    @discardableResult
    private func sendToSubscribers(of roomId: String, _ frame: OutgoingFrame, seq: Int?, except excludedUser: String?, state: inout State) -> Int {
        var fanOut = FanOut()
        let sent = addSubscribers(of: roomId, frame, seq: seq, except: excludedUser, to: &fanOut, state: &state)
        fanOut.send()
        return sent
    }

    /// Adds `frame` for every live subscriber of the room (but `excludedUser`), and holds it for
    /// those still joining (see `RoomSubscribers.deliver`). Returns how many it was added for.
    private func addSubscribers(
        of roomId: String, _ frame: OutgoingFrame, seq: Int?, except excludedUser: String?, to fanOut: inout FanOut, state: inout State
    ) -> Int {
        let recipients = state.subscribers.deliver(frame, seq: seq, in: roomId, except: excludedUser)
        for recipient in recipients {
            fanOut.add(frame, to: recipient)
        }
        return recipients.count
    }

    private func sendRoomEvent(_ roomId: String, now: Int, state: inout State) {
        var fanOut = FanOut()
        addRoomEvent(roomId, now: now, to: &fanOut, state: &state)
        fanOut.send()
    }

    private func addRoomEvent(_ roomId: String, now: Int, to fanOut: inout FanOut, state: inout State) {
        guard let watchers = state.watchers[roomId], !watchers.isEmpty, let room = state.rooms[roomId] else { return }
        let frame = encode(Envelope(type: .room, roomId: roomId, data: RoomEventData(room: room.room, lastMessage: room.lastMessage), timestamp: now))
        for id in watchers {
            if let connection = state.connections[id] { fanOut.add(frame, to: connection.recipient) }
        }
    }

    private func sendPresence(of userId: String, _ status: PresenceStatus, now: Int, state: inout State) {
        var audience = Set<String>()
        for roomId in state.userRooms[userId] ?? [] {
            audience.formUnion(state.rooms[roomId]?.members ?? [])
        }
        audience.remove(userId)
        guard !audience.isEmpty else { return }
        let frame = encode(Envelope(type: .presence, data: PresenceData(status: status), timestamp: now, userId: userId))
        var fanOut = FanOut()
        for user in audience {
            for id in state.presence.connections(of: user) {
                if let connection = state.connections[id] { fanOut.add(frame, to: connection.recipient) }
            }
        }
        fanOut.send()
    }
}
