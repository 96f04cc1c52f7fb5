import Foundation
import Synchronization
import SwitchboardProtocol
import WSClient

// MARK: Status and identity

extension ChatClient {
    /// Where the client stands now.
    public var status: ConnectionStatus { state.withLock { $0.connection.machine.status } }

    /// The logged-in user, once the server has confirmed the credentials; `nil` before.
    public var currentUser: User? { state.withLock { $0.connection.user } }

    /// The token the client uses: the configured one, or the session token of a password login,
    /// waiting for the login if it has not happened yet.
    ///
    /// - Throws: ``ClientError`` when the client stopped before it had a token.
    public func token() async throws(ClientError) -> String {
        let id = state.withLock { $0.waiters.makeID() }
        do {
            return try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<String, any Error>) in
                    let now: Result<String, any Error>? = state.withLock { state in
                        if let token = state.connection.token { return .success(token) }
                        if let error = state.closedError { return .failure(error) }
                        if Task.isCancelled { return .failure(CancellationError()) }
                        state.waiters.add(.token(continuation), for: .token, id: id)
                        return nil
                    }
                    if let now { continuation.resume(with: now) }
                }
            } onCancel: {
                state.withLock { $0.waiters.remove(.token, id: id) }?.fail(CancellationError())
            }
        } catch let error as ClientError {
            throw error
        } catch {
            throw ClientError(.shutdown, "cancelled while waiting for the login", cause: error)
        }
    }
}

// MARK: Rooms

/// A subscribed room and its messages: what ``ChatClient/subscribe(to:after:)`` returns.
///
/// Its ``messages`` stream exists before the client joins the room, so it holds every message the
/// join replays or recovers: nothing is missed between subscribing and reading. Read it, or drop it:
/// a stream that is kept and not read holds the client up once its buffer is full (see
/// ``ClientConfiguration/EventBuffers``). The room's properties read through: `subscription.id`,
/// `subscription.name`.
@dynamicMemberLookup
public struct Subscription: Sendable {
    /// The room, as the server joined it.
    public let room: Room
    /// The room's messages from the subscription on, once each and in `seq` order, until the client stops.
    public let messages: AsyncStream<Message>

    /// A property of the room.
    public subscript<Value>(dynamicMember keyPath: KeyPath<Room, Value>) -> Value {
        room[keyPath: keyPath]
    }
}

extension ChatClient {
    /// Subscribes to a room's live events, and returns the room and its message stream once the server has joined it.
    ///
    /// From then on the client hands over every message of the room once, in `seq` order, across
    /// reconnections, and joins the room again by itself after each one. Joining a public room
    /// makes the user a member.
    ///
    /// ```swift
    /// let room = try await client.subscribe(to: roomId)                // live from now on
    /// for await message in room.messages { print(message.content) }
    /// let again = try await client.subscribe(to: roomId, after: 0)     // every message from the first
    /// ```
    ///
    /// - Parameters:
    ///   - roomId: The room.
    ///   - seq: Hand over messages after this `seq` (an application that kept its place), `0` for the
    ///     whole history; `nil` starts from the position store's `seq` for the room
    ///     (``ClientConfiguration/positions``), or else from now. Ignored when already subscribed.
    /// - Throws: ``ClientError`` (`forbidden`, `notFound`) when the room cannot be joined; `timeout` when
    ///   ``ClientConfiguration/deliveryTimeout`` passed first (the subscription is then dropped);
    ///   `storage` when the position store failed; `shutdown` when the client stopped first.
    @discardableResult
    public func subscribe(to roomId: String, after seq: Int? = nil) async throws -> Subscription {
        // Made before the join goes out, so that it holds what the join replays.
        let messages = hub.queue { item -> Message? in
            guard case .message(let message) = item.event, message.roomId == roomId else { return nil }
            return message
        }.stream()
        var start = seq
        if start == nil { start = try await startPosition(of: roomId) }
        let id = state.withLock { $0.waiters.makeID() }
        let created = Locked<Int?>(nil)
        let join: @Sendable () async throws -> Room = { [start] in
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Room, any Error>) in
                    let now: Result<Room, any Error>? = self.withState { state in
                        if let error = state.closedError { return .failure(error) }
                        if Task.isCancelled { return .failure(CancellationError()) }
                        state.subscriptions.follow.excluded.remove(roomId)
                        if let existing = state.subscriptions.rooms[roomId], let room = existing.room, existing.joinedOn != nil { return .success(room) }
                        if state.subscriptions.rooms[roomId] == nil {
                            self.follow(roomId, after: start, state: &state)
                            created.withLock { $0 = state.subscriptions.nextGeneration }
                        }
                        state.waiters.add(.subscription(continuation), for: .join(roomId: roomId), id: id)
                        return nil
                    }
                    if let now { continuation.resume(with: now) }
                }
            } onCancel: {
                self.state.withLock { $0.waiters.remove(.join(roomId: roomId), id: id) }?.fail(CancellationError())
            }
        }
        do {
            let room = try await waitingAtMost(join) {
                ClientError(.timeout, "room \(roomId) was not joined within \($0.formattedSeconds) (the server cannot be reached); not subscribed")
            }
            return Subscription(room: room, messages: messages)
        } catch let error as ClientError where error.code == .timeout {
            // A timed-out subscribe leaves nothing behind: an error means not subscribed.
            if let generation = created.withLock({ $0 }) { await unsubscribe(from: roomId, generation: generation) }
            throw error
        }
    }

    /// Follows every room the user is a member of, and every room that appears later (made with the
    /// user in it, the user added, a first direct message), and returns every event from this call on.
    ///
    /// The stream is made before any room is joined, so it holds what the joins replay. Each room
    /// starts after its position in ``ClientConfiguration/positions`` when there is one, else from
    /// now; a room that appears while the client runs is followed from the moment it appears (one that
    /// appears while the rooms are being listed, from its position, as a listed room). After
    /// each (re)connection the rooms are listed again, and ``ClientEvent/ready`` comes when every
    /// room has caught up. ``unsubscribe(from:)`` stops following a room until ``subscribe(to:after:)``.
    ///
    /// ```swift
    /// for await event in client.followAllRooms() {
    ///     guard case .message(let message) = event, !client.isOwn(message) else { continue }
    ///     try await reply(to: message)
    ///     try await client.markHandled(message)
    /// }
    /// ```
    public func followAllRooms() -> AsyncStream<ClientEvent> {
        let events = hub.stream { $0 }
        let bell = withState { state -> Doorbell? in
            state.subscriptions.follow.all = true
            return state.connection.link?.joinBell
        }
        bell?.ring()
        return events
    }

    /// Stops handing over the room's events; the user stays a member.
    ///
    /// Waiting ``subscribe(to:after:)`` calls for the room throw `CancellationError`.
    public func unsubscribe(from roomId: String) async {
        await unsubscribe(from: roomId, generation: nil)
    }

    /// Unsubscribes; with `generation`, only when the subscription is still that one.
    func unsubscribe(from roomId: String, generation: Int?) async {
        let waiters = withState { state -> [Waiters.Continuation] in
            guard let room = state.subscriptions.rooms[roomId], generation == nil || room.generation == generation else { return [] }
            state.subscriptions.rooms[roomId] = nil
            if state.subscriptions.follow.all { state.subscriptions.follow.excluded.insert(roomId) }
            if let link = state.connection.link, link.isWebSocket, room.joinSentOn == link.id {
                // Sent by the task that sends joins, so that a quick subscribe again goes out after it.
                state.subscriptions.leaves.append(roomId)
                link.joinBell.ring()
            }
            return state.waiters.take(.join(roomId: roomId))
        }
        Waiters.fail(waiters, with: CancellationError())
        checkReady()
    }

    /// The rooms subscribed to.
    public var subscribedRooms: [String] { state.withLock { $0.subscriptions.rooms.keys.sorted() } }

    /// The `seq` of the last message of the room handed to the application; `nil` when not subscribed
    /// or not yet joined. It moves when a message is handed over, not when the application has handled
    /// it: to resume after a restart, record handled messages with ``markHandled(_:)``.
    public func lastSeq(in roomId: String) -> Int? {
        state.withLock { $0.subscriptions.rooms[roomId]?.timeline.delivered }
    }

    /// Records that the application has handled `message` (and every earlier one of its room), in
    /// ``ClientConfiguration/positions``, so that a restarted client resumes after it.
    ///
    /// Call it after the work is done (the reply sent, the row written), not when the message arrives:
    /// a message received and not yet handled when the process dies is then handed over again.
    ///
    /// - Throws: ``ClientError`` with ``ClientError/Code/storage`` when the store failed; nothing without a store.
    public func markHandled(_ message: Message) async throws {
        try await markHandled(room: message.roomId, seq: message.seq)
    }

    /// Records that everything up to `seq` of the room was handled (see ``markHandled(_:)``).
    public func markHandled(room roomId: String, seq: Int) async throws {
        guard let store = configuration.positions else { return }
        do {
            try await store.setPosition(seq, in: roomId)
        } catch {
            throw ClientError(.storage, "cannot record the position \(seq) of room \(roomId)", cause: error)
        }
    }

    /// Runs `operation`, throwing the error `onTimeout` makes when ``ClientConfiguration/deliveryTimeout`` passes first.
    func waitingAtMost<Value: Sendable>(
        _ operation: @escaping @Sendable () async throws -> Value, onTimeout: @escaping @Sendable (Duration) -> ClientError
    ) async throws -> Value {
        guard let timeout = configuration.deliveryTimeout else { return try await operation() }
        return try await withDeadline(timeout, onTimeout: onTimeout(timeout), operation)
    }
}

// MARK: Users and members

extension ChatClient {
    /// Whether the message is the user's own (sent by this client or another of the same user).
    ///
    /// ```swift
    /// for await message in room.messages where !client.isOwn(message) { … }
    /// ```
    public func isOwn(_ message: Message) -> Bool {
        state.withLock { $0.connection.user?.id == message.userId }
    }

    /// A user the client knows (from join acks, membership events, lookups), without asking the server.
    public func cachedUser(id userId: String) -> User? {
        state.withLock { $0.directory.users[userId] }
    }

    /// A user by id: from the client's cache, else asked of the server (`GET /api/users/{id}`, protocol 1.1) and kept.
    ///
    /// ```swift
    /// let author = try await client.user(id: message.userId)
    /// if author.isBot { return }    // bots do not answer bots
    /// ```
    ///
    /// - Throws: ``ClientError`` with `notFound` for an unknown id.
    public func user(id userId: String) async throws -> User {
        if let known = cachedUser(id: userId) { return known }
        let user = try await withToken { try await api.user(id: userId, token: $0) }
        state.withLock { $0.directory.learn(user) }
        return user
    }

    /// The member ids of a room the client has seen (joined, or heard of by a `room` event), kept current by
    /// `member` events; `nil` for a room it has not seen.
    public func members(of roomId: String) -> Set<String>? {
        state.withLock { $0.directory.members[roomId] }
    }

    /// Whether the user is online, as far as the client knows (join acks' `online` and presence events).
    public func isOnline(_ userId: String) -> Bool {
        state.withLock { $0.directory.online.contains(userId) }
    }
}

// MARK: Sending

extension ChatClient {
    /// Sends a message and returns it as the server stored it, once acknowledged.
    ///
    /// The message goes through the outbox: while offline it waits (and is sent when the client is
    /// back), when rate limited it waits as long as the server asks, and after a lost connection it
    /// is sent again with the same `clientId`, so that it is stored exactly once. Cancelling the call
    /// stops the wait, not the message.
    ///
    /// ```swift
    /// let message = try await client.send("deploy done ✅", to: roomId, meta: ["build": 1234])
    /// print("stored as #\(message.seq)")
    /// ```
    ///
    /// - Parameters:
    ///   - content: The text; white space at both ends is trimmed by the server.
    ///   - roomId: A room the user is a member of (subscribing is not needed to send).
    ///   - replyTo: The id of a message this one answers.
    ///   - meta: Up to 1 KiB of JSON that the server relays untouched.
    ///   - clientId: The idempotency key; a new UUID when `nil`. Passing the same one twice stores one message.
    /// - Throws: ``ClientError``: `invalid` or `forbidden` when the server refuses it, `outboxFull`,
    ///   `timeout` when ``ClientConfiguration/deliveryTimeout`` passed first (the message stays in the
    ///   outbox: ``withdraw(_:)`` says whether it may still be stored), `shutdown` when the client stopped
    ///   before it was sent or the message was withdrawn, `unauthorized` when the client failed for good.
    @discardableResult
    public func send(_ content: String, to roomId: String, replyTo: String? = nil, meta: JSONValue? = nil, clientId: String? = nil) async throws -> Message {
        let message = try makePending(content, roomId: roomId, replyTo: replyTo, meta: meta, clientId: clientId)
        let id = state.withLock { $0.waiters.makeID() }
        let topic = Waiters.Topic.send(clientId: message.clientId)
        let acknowledged: @Sendable () async throws -> Message = {
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Message, any Error>) in
                    do {
                        try self.queue(message) { state in
                            if Task.isCancelled { throw CancellationError() }
                            state.waiters.add(.message(continuation), for: topic, id: id)
                        }
                    } catch {
                        continuation.resume(throwing: error)
                    }
                }
            } onCancel: {
                self.state.withLock { $0.waiters.remove(topic, id: id) }?.fail(CancellationError())
            }
        }
        return try await waitingAtMost(acknowledged) {
            ClientError(
                .timeout,
                "the message \(message.clientId) was not acknowledged within \($0.formattedSeconds); it is still in the outbox"
            )
        }
    }

    /// Takes a message back from the outbox, when it was never sent.
    ///
    /// - Returns: `true` when it was removed before it ever went out (it will not be stored); `false` when it
    ///   was sent at least once (the server may have stored it: it stays, and is sent again with the same
    ///   `clientId` until acknowledged, so it is stored at most once) or is not in the outbox. A
    ///   ``send(_:to:replyTo:meta:clientId:)`` still waiting for a withdrawn message fails at once with `shutdown`.
    ///
    /// ```swift
    /// do { try await client.send(text, to: roomId, clientId: id) }
    /// catch let error as ClientError where error.code == .timeout {
    ///     print(client.withdraw(id) ? "not sent" : "may still be delivered")
    /// }
    /// ```
    public func withdraw(_ clientId: String) -> Bool {
        let error = ClientError(.shutdown, "the message \(clientId) was withdrawn by the application (withdraw(_:)); it will not be stored")
        // Settled as any message that leaves the outbox: its senders fail now (not at the next message to reuse
        // the clientId), and a flush waiting for the outbox ends when it is empty.
        let settled = withState { state -> Settled? in
            guard case .withdrawn(let message) = state.outbox.withdraw(clientId) else { return nil }
            emit(.messageRejected(message, error))
            return settle(clientId, in: &state)
        }
        guard let settled else { return false }
        finish(settled, with: .failure(error))
        return true
    }

    /// Queues a message without waiting for it; its fate comes as ``ClientEvent/messageSent(_:)`` or
    /// ``ClientEvent/messageRejected(_:_:)``.
    ///
    /// ```swift
    /// let pending = try client.enqueue("nightly report", to: roomId)
    /// ```
    ///
    /// - Returns: The queued message, with its `clientId`.
    /// - Throws: ``ClientError`` (`invalid`, `outboxFull`, `shutdown`, `storage`) when it cannot be queued.
    @discardableResult
    public func enqueue(_ content: String, to roomId: String, replyTo: String? = nil, meta: JSONValue? = nil, clientId: String? = nil) throws -> PendingMessage {
        let message = try makePending(content, roomId: roomId, replyTo: replyTo, meta: meta, clientId: clientId)
        try queue(message) { _ in }
        return message
    }

    /// The messages waiting in the outbox, oldest first.
    public var pendingMessages: [PendingMessage] { state.withLock { $0.outbox.entries } }

    private func makePending(_ content: String, roomId: String, replyTo: String?, meta: JSONValue?, clientId: String?) throws(ClientError) -> PendingMessage {
        // The protocol's own checks, as the server makes them; but the content's length is the server's to judge
        // (it answers with an error), since it is configurable there.
        var limits = Limits()
        limits.maxContentLength = .max
        let clientId = clientId ?? UUID().uuidString.lowercased()
        do {
            _ = try Validation.content(content, limits: limits)
            try Validation.clientId(clientId)
        } catch {
            throw ClientError(error)
        }
        let now = Int(Date().timeIntervalSince1970 * 1000)
        let message = PendingMessage(clientId: clientId, roomId: roomId, content: content, replyTo: replyTo, meta: meta, queuedAt: now)
        let size = (try? Wire.encodeString(Envelope(type: .message, roomId: roomId, data: message.data, ref: "o:" + clientId)).utf8.count) ?? .max
        guard size <= configuration.maxMessageBytes else {
            throw ClientError(.invalid, "the message is \(size) bytes as sent, over the \(configuration.maxMessageBytes) the server accepts (maxMessageBytes)")
        }
        return message
    }

    /// Puts a message in the outbox (and its file, before anything can send it), running `register` under the same lock.
    private func queue(_ message: PendingMessage, register: (inout State) throws -> Void) throws {
        let bell = try withState { state -> Doorbell? in
            if let error = state.closedError { throw error }
            guard !state.outbox.conflicts(with: message) else {
                throw ClientError(.invalid, "the clientId \(message.clientId) is in use by another message waiting in the outbox")
            }
            try register(&state)
            switch state.outbox.enqueue(message) {
            case .full:
                // The caller's continuation gets the error this throws.
                _ = state.waiters.take(.send(clientId: message.clientId))
                throw ClientError(.outboxFull, "the outbox holds \(state.outbox.count) messages, its capacity")
            case .alreadyQueued:
                return state.connection.link?.outboxBell
            case .clientIdInUse:
                preconditionFailure("checked above")
            case .queued:
                if let outboxFile {
                    // Written before the lock is released, so that no message is sent before it is in the file.
                    do {
                        try outboxFile.add(message)
                    } catch {
                        _ = state.outbox.refused(message.clientId)
                        _ = state.waiters.take(.send(clientId: message.clientId))
                        throw error
                    }
                }
                return state.connection.link?.outboxBell
            }
        }
        bell?.ring()
    }

    /// Tells the room's other members that the user is typing, or stopped. Best effort: nothing is
    /// sent when the client is not connected by WebSocket (polling has no typing indicators).
    ///
    /// - Returns: Whether the indicator was sent.
    @discardableResult
    public func sendTyping(_ isTyping: Bool = true, in roomId: String) async -> Bool {
        let target = withState { state -> (WebSocketOutboundWriter, String)? in
            guard let link = state.connection.link, case .webSocket(let writer) = link.kind else { return nil }
            let ref = state.requests.makeRef("t")
            register(PendingRequest(link: link.id, kind: .ignore), ref: ref, state: &state)
            return (writer, ref)
        }
        guard let (writer, ref) = target else { return false }
        do {
            try await writer.write(.text(Wire.encodeString(Envelope(type: .typing, roomId: roomId, data: TypingData(isTyping: isTyping), ref: ref))))
            return true
        } catch {
            return false
        }
    }

    /// Adds (or removes) a reaction to a message, and returns the message's new counts.
    ///
    /// ```swift
    /// let counts = try await client.react("👍", to: message.id, in: roomId)
    /// ```
    ///
    /// - Throws: ``ClientError``: `notConnected` when offline, `unavailable` while polling (the
    ///   protocol has no HTTP route for reactions), `notFound` for an unknown message.
    @discardableResult
    public func react(_ reaction: String, to messageId: String, in roomId: String, action: ReactionAction = .add) async throws -> [String: Int] {
        let reply = try await request(.reaction, roomId: roomId, data: ReactionData(messageId: messageId, reaction: reaction, action: action))
        do {
            return try reply.decode(ReactionAck.self).reactions
        } catch {
            throw ClientError(.badResponse, "the ack of a reaction cannot be read", cause: error)
        }
    }

    /// Sends a request on the WebSocket and waits for its answer.
    func request<Payload: Codable & Sendable>(_ type: EnvelopeType, roomId: String?, data: Payload) async throws -> ServerEvent.Reply {
        let target = try withState { state -> (WebSocketOutboundWriter, String, Int) in
            if let error = state.closedError { throw error }
            guard let link = state.connection.link else { throw ClientError(.notConnected, "the client is not connected") }
            guard case .webSocket(let writer) = link.kind else {
                throw ClientError(.unavailable, "\(type) needs the WebSocket, and the client is long polling")
            }
            let ref = state.requests.makeRef("c")
            register(PendingRequest(link: link.id, kind: .awaiting), ref: ref, state: &state)
            return (writer, ref, link.id)
        }
        let (writer, ref, linkID) = target
        do {
            try await writer.write(.text(Wire.encodeString(Envelope(type: type, roomId: roomId, data: data, ref: ref))))
        } catch {
            state.withLock { _ = $0.requests.pending.removeValue(forKey: ref) }
            throw ClientError(.connectionLost, "the connection ended before the request went out", cause: error)
        }
        do {
            return try await withDeadline(configuration.requestTimeout, onTimeout: ClientError(.timeout, "no answer to \(type) in time")) {
                try await withTaskCancellationHandler {
                    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ServerEvent.Reply, any Error>) in
                        let now: Result<ServerEvent.Reply, any Error>? = self.state.withLock { state in
                            guard let pending = state.requests.pending[ref], pending.link == linkID else {
                                return .failure(ClientError(.connectionLost, "the connection ended before the answer came"))
                            }
                            if case .answered(let result) = pending.kind {
                                state.requests.pending[ref] = nil
                                return result.mapError { $0 as any Error }
                            }
                            if Task.isCancelled {
                                state.requests.pending[ref] = nil
                                return .failure(CancellationError())
                            }
                            state.requests.pending[ref] = PendingRequest(link: linkID, kind: .call)
                            state.waiters.add(.reply(continuation), for: .call(ref: ref), id: 0)
                            return nil
                        }
                        if let now { continuation.resume(with: now) }
                    }
                } onCancel: {
                    let waiters = self.state.withLock { state -> [Waiters.Continuation] in
                        state.requests.pending[ref] = nil
                        return state.waiters.take(.call(ref: ref))
                    }
                    Waiters.fail(waiters, with: CancellationError())
                }
            }
        } catch {
            // After a timeout or a cancellation, an answer that comes later has nobody to go to.
            state.withLock { _ = $0.requests.pending.removeValue(forKey: ref) }
            throw error
        }
    }
}

extension ChatClient {
    /// Runs an HTTP call with the client's token. When the call fails because the client stopped
    /// meanwhile (its HTTP connections are closed then), the error says why the client stopped.
    func withToken<Value: Sendable>(_ call: (String) async throws -> Value) async throws -> Value {
        let token = try await token()
        do {
            return try await call(token)
        } catch let error as ClientError where error.protocolError == nil {
            if let closed = state.withLock({ $0.closedError }) { throw closed }
            throw error
        }
    }
}

// MARK: Events

extension ChatClient {
    /// Every event, as it happens, until the client stops.
    ///
    /// Each call makes a new stream that sees the events from then on; a stream buffers what its
    /// reader has not taken yet.
    public func events() -> AsyncStream<ClientEvent> {
        hub.stream { $0 }
    }

    /// The messages of one subscribed room, or of all of them, once each and in `seq` order per room,
    /// from this call on: a room's replay after ``subscribe(to:after:)`` is in the ``Subscription``'s own stream.
    ///
    /// ```swift
    /// for await message in client.messages(in: roomId) { print(message.content) }
    /// ```
    public func messages(in roomId: String? = nil) -> AsyncStream<Message> {
        hub.stream { event in
            guard case .message(let message) = event, roomId == nil || message.roomId == roomId else { return nil }
            return message
        }
    }

    /// Typing indicators of one subscribed room, or of all of them.
    public func typing(in roomId: String? = nil) -> AsyncStream<TypingEvent> {
        hub.stream { event in
            guard case .typing(let typing) = event, roomId == nil || typing.roomId == roomId else { return nil }
            return typing
        }
    }

    /// Reactions in one subscribed room, or in all of them.
    public func reactions(in roomId: String? = nil) -> AsyncStream<ReactionEvent> {
        hub.stream { event in
            guard case .reaction(let reaction) = event, roomId == nil || reaction.roomId == roomId else { return nil }
            return reaction
        }
    }

    /// Users who share a room with this one coming online and going offline.
    public func presence() -> AsyncStream<PresenceEvent> {
        hub.stream { event in
            guard case .presence(let presence) = event else { return nil }
            return presence
        }
    }

    /// The connection status: the current one first, then each change, until the client stops.
    ///
    /// ```swift
    /// let online = await client.statusUpdates().first { $0.isOnline }
    /// ```
    public func statusUpdates() -> AsyncStream<ConnectionStatus> {
        // The current status is read directly, changes come through the dispatcher: their numbers put
        // them in order, so that an older change still being dispatched never follows a newer status.
        let newest = Locked(-1)
        let isNewer: @Sendable (Int) -> Bool = { version in
            newest.withLock { newest in
                guard version > newest else { return false }
                newest = version
                return true
            }
        }
        let queue = EventQueue<ConnectionStatus>(capacity: configuration.eventBuffers.messages, lossyCapacity: configuration.eventBuffers.live)
        let subscriber = EventHub.Subscriber(
            deliver: { item in
                if case .status(let status) = item.event, isNewer(item.statusVersion) { await queue.push(status, lossy: true) }
            },
            isGone: { queue.isClosed },
            finish: { queue.finish() },
            stopWaiting: { queue.stopWaiting() }
        )
        let added = hub.add(subscriber) != nil
        let (current, version) = state.withLock { ($0.connection.machine.status, $0.connection.statusVersion) }
        if isNewer(version) { queue.pushNow(current, lossy: true) }
        // The client has stopped: its last status, and the end.
        if !added { queue.finish() }
        return queue.stream()
    }

    /// Calls `listener` with every event until the token is cancelled.
    ///
    /// Each listener runs on a task of its own, with the events in order, through a bounded queue (see
    /// ``ClientConfiguration/EventBuffers``): a slow listener delays no other until its queue is full of
    /// messages. Cancelling the token drops what waits for it.
    public func onEvent(_ listener: @escaping @Sendable (ClientEvent) -> Void) -> ListenerToken {
        hub.listen({ $0 }, listener)
    }

    /// Calls `listener` with each message of one subscribed room, or of all, until the token is cancelled.
    ///
    /// ```swift
    /// let token = client.onMessage(in: roomId) { message in print(message.content) }
    /// defer { token.cancel() }
    /// ```
    public func onMessage(in roomId: String? = nil, _ listener: @escaping @Sendable (Message) -> Void) -> ListenerToken {
        hub.listen({ event in
            guard case .message(let message) = event, roomId == nil || message.roomId == roomId else { return nil }
            return message
        }, listener)
    }

    /// Calls `listener` with each typing indicator of one subscribed room, or of all, until the token is cancelled.
    public func onTyping(in roomId: String? = nil, _ listener: @escaping @Sendable (TypingEvent) -> Void) -> ListenerToken {
        hub.listen({ event in
            guard case .typing(let typing) = event, roomId == nil || typing.roomId == roomId else { return nil }
            return typing
        }, listener)
    }

    /// Calls `listener` with each status change until the token is cancelled.
    public func onStatus(_ listener: @escaping @Sendable (ConnectionStatus) -> Void) -> ListenerToken {
        hub.listen({ event in
            guard case .status(let status) = event else { return nil }
            return status
        }, listener)
    }
}

// MARK: HTTP API

extension ChatClient {
    /// The user's rooms, each with its newest message and unread count (`GET /api/rooms`).
    public func rooms() async throws -> [RoomSummary] {
        try await withToken { try await api.rooms(token: $0) }
    }

    /// One room (`GET /api/rooms/{id}`).
    public func room(_ roomId: String) async throws -> Room {
        try await withToken { try await api.room(roomId, token: $0) }
    }

    /// Creates a group room; the user becomes a member (`POST /api/rooms`).
    public func createRoom(named name: String, isPublic: Bool = false, members: [String] = []) async throws -> Room {
        try await withToken { try await api.createRoom(CreateRoomRequest(name: name, isPublic: isPublic, members: members), token: $0) }
    }

    /// The direct room of the user and another, made on first use (`POST /api/dms`).
    public func directRoom(with userId: String) async throws -> Room {
        try await withToken { try await api.directRoom(with: userId, token: $0) }
    }

    /// Adds a user to a room (`POST /api/rooms/{id}/members`).
    public func addMember(_ userId: String, to roomId: String) async throws -> Room {
        try await withToken { try await api.addMember(roomId: roomId, userId: userId, token: $0) }
    }

    /// Removes a user from a room: the user themself, or anyone when the user created it.
    public func removeMember(_ userId: String, from roomId: String) async throws -> Room {
        try await withToken { try await api.removeMember(roomId: roomId, userId: userId, token: $0) }
    }

    /// Users whose username or display name contains `query` (`GET /api/users`).
    public func users(matching query: String) async throws -> [User] {
        let users = try await withToken { try await api.users(query: query, token: $0) }
        state.withLock { state in
            for user in users { state.directory.learn(user) }
        }
        return users
    }

    /// Public rooms whose name contains `query`, members or not, sorted by name (`GET /api/rooms/public`, protocol 1.1).
    ///
    /// - Parameter limit: At most this many (the server caps it at 200).
    public func publicRooms(matching query: String = "", limit: Int = 50) async throws -> [Room] {
        try await withToken { try await api.publicRooms(query: query, limit: limit, token: $0) }
    }

    /// Who is online and who is typing among a room's members (`GET /api/rooms/{id}/presence`, protocol 1.1).
    public func presence(in roomId: String) async throws -> RoomPresence {
        try await withToken { try await api.presence(roomId: roomId, token: $0) }
    }

    /// The user's live tokens, session tokens included (`GET /api/tokens`, protocol 1.1).
    public func tokens() async throws -> [TokenInfo] {
        try await withToken { try await api.tokens(token: $0) }
    }

    /// Ends the client's session on the server (`POST /api/logout`, protocol 1.1): its token stops
    /// working, the connection closes, and the client stops for good with `unauthorized`.
    public func logout() async throws {
        try await withToken { try await api.logout(token: $0) }
    }

    /// A page of a room's history, ascending by `seq` (`GET /api/rooms/{id}/messages`).
    ///
    /// - Parameters:
    ///   - after: Messages above this `seq`.
    ///   - before: Messages below this `seq`.
    ///   - limit: At most this many (the server caps it at 200); with neither bound, the newest.
    public func history(in roomId: String, after: Int? = nil, before: Int? = nil, limit: Int = 50) async throws -> MessagesResponse {
        try await withToken { try await api.history(roomId: roomId, after: after, before: before, limit: limit, token: $0) }
    }

    /// The logged-in user, asked of the server (`GET /api/me`).
    public func me() async throws -> User {
        try await withToken { try await api.me(token: $0) }
    }

    /// Makes a long-lived token for a bot or a script (`POST /api/tokens`); the token is shown this once.
    public func createToken(named name: String, expiresIn: Duration? = nil) async throws -> CreateTokenResponse {
        try await withToken { try await api.createToken(CreateTokenRequest(name: name, expiresInSeconds: expiresIn.map { Int($0.components.seconds) }), token: $0) }
    }

    /// Revokes one of the user's tokens (`DELETE /api/tokens/{id}`); connections using it close at once.
    public func revokeToken(id: String) async throws {
        try await withToken { try await api.revokeToken(id: id, token: $0) }
    }

    /// Logs in without making a client, for a token to keep (`POST /api/login`).
    ///
    /// ```swift
    /// let session = try await ChatClient.login(server: "http://127.0.0.1:3001", username: "ana", password: secret)
    /// ```
    public static func login(server: String, username: String, password: String, timeout: Duration = .seconds(30)) async throws -> AuthResponse {
        try await HTTPAPI(base: ClientConfiguration(server: server, credentials: .token("")).httpBase, timeout: timeout)
            .login(username: username, password: password)
    }

    /// Creates an account and logs in (`POST /api/register`).
    public static func register(
        server: String, username: String, password: String, displayName: String? = nil, timeout: Duration = .seconds(30)
    ) async throws -> AuthResponse {
        try await HTTPAPI(base: ClientConfiguration(server: server, credentials: .token("")).httpBase, timeout: timeout)
            .register(RegisterRequest(username: username, password: password, displayName: displayName))
    }
}

extension ChatClient.State {
    /// Why nothing more can be done, when that is so.
    var closedError: ClientError? {
        if case .failed(let error) = connection.machine.status { return error }
        if isClosed { return ClientError(.shutdown, "the client was disconnected") }
        return nil
    }
}
