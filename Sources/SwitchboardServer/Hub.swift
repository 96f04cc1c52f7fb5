import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOWebSocket
import Synchronization
import SwitchboardProtocol

/// Who is connected, to which rooms, and who should see what: the live half of the server.
///
/// One lock guards all of it. Everything done under the lock is short and never waits: sinks
/// only queue frames. Publishing under the lock is what keeps every subscriber's view in one
/// order, and a joining connection's replay, ack and live messages free of gaps and repeats.
final class Hub: Sendable {
    /// Where a subscription of one connection to one room stands.
    private enum Phase {
        /// Between `beginJoin` and `completeJoin`: live events wait here until the replay is out.
        case joining([Pending])
        /// Live; messages with `seq` at or below `lastSeq` were already delivered by the replay.
        case live(lastSeq: Int)
    }

    private struct Pending {
        var frame: OutgoingFrame
        var seq: Int?
    }

    /// A subscription of one connection to one room. A class, shared by the room's subscriber
    /// list and the connection's, so that a delivery reads and updates one object, with no
    /// dictionary lookup and no copy of the connection.
    ///
    /// It and its connection refer to each other; `unsubscribe` breaks that, and `unregister`
    /// unsubscribes a connection from everything before dropping it.
    private final class Subscription {
        let connection: Connection
        var phase: Phase

        init(connection: Connection, phase: Phase) {
            self.connection = connection
            self.phase = phase
        }
    }

    private final class Connection {
        let user: User
        let tokenId: String?
        let tokenExpiresAt: Int?
        let sink: any EventSink
        /// The sink as a WebSocket, looked up once: a fan-out writes to its handler directly.
        let socket: SocketWriter?
        /// A long-polling session: subscribed to every room of its user, now and later.
        let followsAllRooms: Bool
        var subscriptions: [String: Subscription] = [:]

        init(user: User, tokenId: String?, tokenExpiresAt: Int?, sink: any EventSink, followsAllRooms: Bool) {
            self.user = user
            self.tokenId = tokenId
            self.tokenExpiresAt = tokenExpiresAt
            self.sink = sink
            self.socket = sink as? SocketWriter
            self.followsAllRooms = followsAllRooms
        }
    }

    /// What the hub knows of a room: enough to check access and to fill `room` events.
    struct RoomState: Sendable {
        var room: Room
        var members: Set<String>
        var lastMessage: Message?
    }

    private struct TypingKey: Hashable {
        let roomId: String
        let userId: String
    }

    private struct State {
        var nextConnectionID = 0
        var connections: [Int: Connection] = [:]
        /// Per room, its subscriptions by connection id.
        var subscribers: [String: [Int: Subscription]] = [:]
        var userConnections: [String: Set<Int>] = [:]
        var rooms: [String: RoomState] = [:]
        /// Rooms of users with at least one connection, for presence.
        var userRooms: [String: Set<String>] = [:]
        /// Per room, how many of each user's connections are subscribed: `join` and `leave`
        /// notices go out when it leaves or reaches zero.
        var subscribedConnections: [String: [String: Int]] = [:]
        /// Per room, the connections of members that are not subscribed: they get `room` events.
        /// Kept up to date so that a message to a room everyone joined costs nothing extra.
        var watchers: [String: Set<Int>] = [:]
        var typing: [TypingKey: Scheduled<Void>] = [:]
    }

    private let state = Mutex(State())
    private let metrics: ServerMetrics
    private let typingExpiry: TimeAmount
    private let timers: any EventLoop

    init(configuration: ServerConfiguration, metrics: ServerMetrics) {
        self.metrics = metrics
        self.typingExpiry = .nanoseconds(Int64(configuration.typingExpiry.seconds * 1e9))
        self.timers = MultiThreadedEventLoopGroup.singleton.next()
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
            }
        }
    }

    /// A room was created: tell its members' connections.
    func roomCreated(_ room: Room, now: Int) {
        state.withLock { state in
            state.rooms[room.id] = RoomState(room: room, members: Set(room.members))
            for member in room.members { addRoom(room.id, toUser: member, now: now, state: &state) }
            sendRoomEvent(room.id, now: now, state: &state)
        }
    }

    /// A user became a member of a room.
    func memberAdded(_ userId: String, to room: Room, now: Int) {
        state.withLock { state in
            let known = state.rooms[room.id]
            let members = (known?.members ?? []).union(room.members).union([userId])
            var updated = room
            updated.members = members.sorted()
            state.rooms[room.id] = RoomState(room: updated, members: members, lastMessage: known?.lastMessage)
            addRoom(room.id, toUser: userId, now: now, state: &state)
            sendRoomEvent(room.id, now: now, state: &state)
        }
    }

    /// A user stopped being a member of a room: their connections lose its events.
    func memberRemoved(_ userId: String, from room: Room, now: Int) {
        state.withLock { state in
            let known = state.rooms[room.id]
            var members = (known?.members ?? Set(room.members))
            members.remove(userId)
            var updated = room
            updated.members = members.sorted()
            state.rooms[room.id] = RoomState(room: updated, members: members, lastMessage: known?.lastMessage)
            state.userRooms[userId]?.remove(room.id)
            for id in state.userConnections[userId] ?? [] {
                unsubscribe(id, from: room.id, now: now, state: &state)
                state.watchers[room.id]?.remove(id)
            }
            sendRoomEvent(room.id, now: now, state: &state)
        }
    }

    private func addRoom(_ roomId: String, toUser userId: String, now: Int, state: inout State) {
        guard let connections = state.userConnections[userId] else { return }
        state.userRooms[userId, default: []].insert(roomId)
        let lastSeq = state.rooms[roomId]?.room.lastSeq ?? 0
        for id in connections where state.connections[id]?.subscriptions[roomId] == nil {
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
            state.connections[id] = Connection(
                user: user, tokenId: tokenId, tokenExpiresAt: tokenExpiresAt, sink: sink, followsAllRooms: followsAllRooms
            )
            let first = state.userConnections[user.id]?.isEmpty ?? true
            state.userConnections[user.id, default: []].insert(id)
            state.userRooms[user.id] = Set(memberRooms.map(\.id))
            for room in memberRooms { state.watchers[room.id, default: []].insert(id) }
            if first { sendPresence(of: user.id, .online, now: now, state: &state) }
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

    /// Removes a connection; announces leaves and, after the user's last connection, offline.
    func unregister(_ id: Int, now: Int) {
        let removed = state.withLock { state -> Bool in
            guard let connection = state.connections[id] else { return false }
            for roomId in connection.subscriptions.keys {
                unsubscribe(id, from: roomId, now: now, state: &state)
            }
            for roomId in state.userRooms[connection.user.id] ?? [] {
                state.watchers[roomId]?.remove(id)
                if state.watchers[roomId]?.isEmpty ?? false { state.watchers[roomId] = nil }
            }
            state.connections[id] = nil
            state.userConnections[connection.user.id]?.remove(id)
            if state.userConnections[connection.user.id]?.isEmpty ?? true {
                state.userConnections[connection.user.id] = nil
                sendPresence(of: connection.user.id, .offline, now: now, state: &state)
                state.userRooms[connection.user.id] = nil
            }
            return true
        }
        if removed { metrics.connections.decrement() }
    }

    /// Closes the connections that use any of these tokens.
    func close(tokens: Set<String>, code: WebSocketErrorCode, reason: String) {
        let sinks = state.withLock { state in
            state.connections.values.filter { $0.tokenId.map(tokens.contains) ?? false }.map(\.sink)
        }
        sinks.forEach { $0.close(code: code, reason: reason) }
    }

    /// Closes the connections whose token has expired at `now`.
    func closeExpired(now: Int) {
        let sinks = state.withLock { state in
            state.connections.values.filter { $0.tokenExpiresAt.map { $0 <= now } ?? false }.map(\.sink)
        }
        sinks.forEach { $0.close(code: .unknown(4001), reason: "token expired") }
    }

    /// Closes every connection, for shutdown.
    func closeAll(code: WebSocketErrorCode, reason: String) {
        let sinks = state.withLock { $0.connections.values.map(\.sink) }
        sinks.forEach { $0.close(code: code, reason: reason) }
    }

    /// Whether a connection is subscribed to a room (joined or joining).
    func isSubscribed(_ id: Int, to roomId: String) -> Bool {
        state.withLock { $0.connections[id]?.subscriptions[roomId] != nil }
    }

    // MARK: Joining and leaving

    /// Subscribes a connection to a room, holding live events back until `completeJoin`.
    func beginJoin(_ id: Int, roomId: String, now: Int) {
        state.withLock { state in
            subscribe(id, to: roomId, as: .joining([]), now: now, state: &state)
        }
    }

    /// Sends the replay and the ack, then the events held back that the replay did not cover.
    func completeJoin(_ id: Int, roomId: String, replay: [OutgoingFrame], ack: OutgoingFrame, lastSeq: Int) {
        state.withLock { state in
            guard let connection = state.connections[id] else { return }
            var fanOut = FanOut()
            for frame in replay { fanOut.add(frame, to: connection.sink, socket: connection.socket) }
            fanOut.add(ack, to: connection.sink, socket: connection.socket)
            var delivered = lastSeq
            let subscription = connection.subscriptions[roomId]
            if case .joining(let pending) = subscription?.phase {
                for event in pending {
                    if let seq = event.seq {
                        guard seq > delivered else { continue }
                        delivered = seq
                    }
                    fanOut.add(event.frame, to: connection.sink, socket: connection.socket)
                }
            }
            fanOut.send()
            subscription?.phase = .live(lastSeq: delivered)
        }
    }

    /// Unsubscribes a connection from a room.
    func leave(_ id: Int, roomId: String, now: Int) {
        state.withLock { state in
            unsubscribe(id, from: roomId, now: now, state: &state)
        }
    }

    private func subscribe(_ id: Int, to roomId: String, as phase: Phase, now: Int, state: inout State) {
        guard let connection = state.connections[id] else { return }
        let user = connection.user
        if let existing = connection.subscriptions[roomId] {
            existing.phase = phase
            return
        }
        let subscription = Subscription(connection: connection, phase: phase)
        connection.subscriptions[roomId] = subscription
        state.subscribers[roomId, default: [:]][id] = subscription
        state.watchers[roomId]?.remove(id)
        state.subscribedConnections[roomId, default: [:]][user.id, default: 0] += 1
        if state.subscribedConnections[roomId]?[user.id] == 1 {
            let frame = encode(Envelope(type: .join, roomId: roomId, data: MemberData(user: user), timestamp: now, userId: user.id))
            sendToSubscribers(of: roomId, frame, seq: nil, except: user.id, state: &state)
        }
    }

    private func unsubscribe(_ id: Int, from roomId: String, now: Int, state: inout State) {
        guard let connection = state.connections[id], connection.subscriptions.removeValue(forKey: roomId) != nil else { return }
        let user = connection.user
        state.subscribers[roomId]?[id] = nil
        if state.subscribers[roomId]?.isEmpty ?? false { state.subscribers[roomId] = nil }
        if state.rooms[roomId]?.members.contains(user.id) ?? false {
            state.watchers[roomId, default: []].insert(id)
        }
        let remaining = (state.subscribedConnections[roomId]?[user.id] ?? 1) - 1
        state.subscribedConnections[roomId]?[user.id] = remaining > 0 ? remaining : nil
        if remaining == 0 {
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
                    if var room = state.rooms[message.roomId] {
                        room.room.lastSeq = max(room.room.lastSeq, message.seq)
                        room.lastMessage = message
                        state.rooms[message.roomId] = room
                    }
                    deliveries += addSubscribers(of: message.roomId, event, seq: message.seq, except: nil, to: &fanOut, state: &state)
                    addRoomEvent(message.roomId, now: now, to: &fanOut, state: &state)
                }
                if let ack = publication.ack {
                    fanOut.add(ack.frame, to: ack.sink, socket: ack.sink as? SocketWriter)
                }
            }
            fanOut.send()
            return deliveries
        }
        metrics.delivered.increment(by: Int64(deliveries))
    }

    /// Sends `typing` to the room's other users, and schedules the automatic `isTyping: false`.
    func typing(roomId: String, userId: String, isTyping: Bool, now: Int) {
        let key = TypingKey(roomId: roomId, userId: userId)
        state.withLock { state in
            state.typing.removeValue(forKey: key)?.cancel()
            let frame = encode(Envelope(type: .typing, roomId: roomId, data: TypingData(isTyping: isTyping), timestamp: now, userId: userId))
            sendToSubscribers(of: roomId, frame, seq: nil, except: userId, state: &state)
            if isTyping {
                state.typing[key] = timers.scheduleTask(in: typingExpiry) { [self] in
                    self.typingExpired(key)
                }
            }
        }
    }

    private func typingExpired(_ key: TypingKey) {
        state.withLock { state in
            guard state.typing.removeValue(forKey: key) != nil else { return }
            let frame = encode(Envelope(
                type: .typing, roomId: key.roomId, data: TypingData(isTyping: false), timestamp: Clock.milliseconds(), userId: key.userId
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
    /// those still joining. Returns how many it was added for.
    private func addSubscribers(
        of roomId: String, _ frame: OutgoingFrame, seq: Int?, except excludedUser: String?, to fanOut: inout FanOut, state: inout State
    ) -> Int {
        guard let subscriptions = state.subscribers[roomId] else { return 0 }
        var sent = 0
        for subscription in subscriptions.values {
            let connection = subscription.connection
            if let excludedUser, connection.user.id == excludedUser { continue }
            switch subscription.phase {
            case .live(let lastSeq):
                if let seq {
                    guard seq > lastSeq else { continue }
                    subscription.phase = .live(lastSeq: seq)
                }
                fanOut.add(frame, to: connection.sink, socket: connection.socket)
                sent += 1
            case .joining(var pending):
                // Drop the stored copy first so that appending does not copy the array.
                subscription.phase = .joining([])
                pending.append(Pending(frame: frame, seq: seq))
                subscription.phase = .joining(pending)
            }
        }
        return sent
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
            if let connection = state.connections[id] { fanOut.add(frame, to: connection.sink, socket: connection.socket) }
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
            for id in state.userConnections[user] ?? [] {
                if let connection = state.connections[id] { fanOut.add(frame, to: connection.sink, socket: connection.socket) }
            }
        }
        fanOut.send()
    }
}

/// Wall-clock time in the protocol's unit.
enum Clock {
    /// Milliseconds since the Unix epoch.
    static func milliseconds() -> Int {
        Int(Date().timeIntervalSince1970 * 1000)
    }
}
