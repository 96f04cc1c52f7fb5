import Logging
import SwitchboardProtocol

extension ChatClient {
    /// Handles one envelope from the server, from the WebSocket or a poll.
    func handleFrame(_ bytes: [UInt8], link: Int) {
        let event: ServerEvent
        do {
            event = try ServerEvent(bytes: bytes)
        } catch {
            // An error frame that cannot be read whole (a field missing) still answers its request, as a final error.
            if let loose = try? Wire.decode(LooseErrorEnvelope.self, from: bytes), loose.type == "error", let ref = loose.ref {
                let code = loose.data?.code ?? "unknown"
                let error = ClientError(.refused, "the server refused (\(code)): \(loose.data?.message ?? "no message")")
                return answered(ref: ref, link: link, .failure(error))
            }
            logger.warning("ignoring a frame that cannot be read", metadata: ["switchboard.error": "\(error)"])
            return
        }
        switch event {
        case .message(let message):
            withState { state in
                guard state.subscriptions.rooms[message.roomId] != nil else { return }
                apply(state.subscriptions.rooms[message.roomId]!.timeline.received(message), roomId: message.roomId, state: &state)
            }
        case .typing(let roomId, let userId, let isTyping):
            emitIfSubscribed(roomId, .typing(TypingEvent(roomId: roomId, userId: userId, isTyping: isTyping)))
        case .reaction(let roomId, let userId, let data):
            emitIfSubscribed(
                roomId,
                .reaction(
                    ReactionEvent(
                        roomId: roomId, userId: userId, messageId: data.messageId, reaction: data.reaction, action: data.action,
                        reactions: data.reactions
                    )
                )
            )
        case .presence(let userId, let status):
            withState { state in
                // A status a newer server added (say, "away") says nothing about being connected.
                if status == .online { state.directory.online.insert(userId) }
                if status == .offline { state.directory.online.remove(userId) }
                emit(.presence(PresenceEvent(userId: userId, status: status)))
            }
        case .join(let roomId, let user):
            withState { state in
                state.directory.learn(user)
                if state.subscriptions.rooms[roomId] != nil { emit(.memberJoined(roomId: roomId, user: user)) }
            }
        case .leave(let roomId, let user):
            withState { state in
                state.directory.learn(user)
                if state.subscriptions.rooms[roomId] != nil { emit(.memberLeft(roomId: roomId, user: user)) }
            }
        case .room(let data):
            roomAppeared(data)
        case .ack(let reply):
            answered(ref: reply.ref, link: link, .success(reply))
        case .error(let ref, let roomId, let error):
            if ref == nil {
                logger.warning("the server reported an error", metadata: ["switchboard.error": "\(error)", "switchboard.room": "\(roomId ?? "")"])
            }
            answered(ref: ref, link: link, .failure(ClientError(error)))
        case .pong:
            break
        case .other(let type, let envelope):
            if type == "member" {
                memberChanged(envelope, bytes: bytes)
            } else {
                // A newer server's event: handed over as it is, for those who know it; ignored otherwise.
                withState { _ in emit(.unknown(envelope)) }
            }
        }
    }

    private func emitIfSubscribed(_ roomId: String, _ event: ClientEvent) {
        withState { state in
            if state.subscriptions.rooms[roomId] != nil { emit(event) }
        }
    }

    /// A `member` event (protocol 1.1): the directory learns it, and a removed user's subscription ends at once.
    private func memberChanged(_ envelope: Envelope<JSONValue>, bytes: [UInt8]) {
        guard let roomId = envelope.roomId, let data = try? Wire.decode(Envelope<MemberEventData>.self, from: bytes).data else {
            logger.warning("ignoring a member event that cannot be read")
            return
        }
        let change = MembershipChange(roomId: roomId, user: data.user, change: data.change, by: data.by)
        let waiters = withState { state -> [Waiters.Continuation] in
            state.directory.apply(change)
            guard state.subscriptions.rooms[roomId] != nil else { return [] }
            emit(.member(change))
            guard change.change == .removed, change.user.id == state.connection.user?.id else { return [] }
            // The server ends the subscription with this event: so does the client, without a join to retry.
            let error = ClientError(.forbidden, "removed from the room\(change.by.map { " by \($0)" } ?? "")")
            return endSubscription(roomId, error: error, state: &state)
        }
        Waiters.fail(waiters, with: ClientError(.forbidden, "removed from the room"))
        checkReady()
    }

    /// A `room` event: the directory learns the room; when following every room, a new one is followed.
    private func roomAppeared(_ data: RoomEventData) {
        withState { state in
            state.directory.learn(data.room)
            emit(.room(data))
            let id = data.room.id
            guard state.subscriptions.follow.all, state.subscriptions.rooms[id] == nil, !state.subscriptions.follow.excluded.contains(id) else { return }
            guard let link = state.connection.link?.id, state.subscriptions.follow.listedOn == link else {
                // The listing of this connection is not done: it follows the room from the position store (a
                // `room` event also comes for a message to a room not followed yet, and the messages before it
                // may be unhandled). The first `lastSeq` is kept for a room the listing does not list.
                state.subscriptions.follow.appeared[id] = state.subscriptions.follow.appeared[id] ?? data.room.lastSeq
                return
            }
            // The server sends `room` when a room is made with the user in it or the user is added, before any
            // message of it reaches the user: so it is followed from the `lastSeq` of that moment, with no guess
            // at which messages are new. (A room that appears while the client is offline is found by the listing
            // at the next connection, and followed from then.)
            follow(id, after: data.room.lastSeq, state: &state)
        }
    }

    /// Starts following a room without a caller waiting: the join goes out on the current connection.
    func follow(_ roomId: String, after seq: Int?, state: inout State) {
        state.subscriptions.nextGeneration += 1
        state.subscriptions.rooms[roomId] = RoomState(timeline: RoomTimeline(after: seq), generation: state.subscriptions.nextGeneration)
        state.connection.link?.joinBell.ring()
    }

    /// The answer to a request of ours.
    func answered(ref: String?, link: Int, _ result: Result<ServerEvent.Reply, ClientError>) {
        guard let ref else { return }
        let (request, callers) = withState { state -> (PendingRequest?, [Waiters.Continuation]) in
            guard let request = state.requests.pending[ref], request.link == link else { return (nil, []) }
            if case .awaiting = request.kind {
                // The caller has not started waiting yet: keep the answer for it, under the same lock.
                state.requests.pending[ref] = PendingRequest(link: link, kind: .answered(result))
                return (nil, [])
            }
            state.requests.pending[ref] = nil
            return (request, state.waiters.take(.call(ref: ref)))
        }
        guard let request else {
            logger.trace("an answer kept for its caller, or to no pending request", metadata: ["switchboard.ref": "\(ref)"])
            return
        }
        switch request.kind {
        case .ignore:
            if case .failure(let error) = result {
                logger.debug("a request was refused", metadata: ["switchboard.ref": "\(ref)", "switchboard.error": "\(error)"])
            }
        case .awaiting, .answered:
            break
        case .call:
            for case .reply(let continuation) in callers { continuation.resume(with: result.mapError { $0 as any Error }) }
        case .outbox(let clientId):
            switch result {
            case .success(let reply):
                do {
                    outboxAcknowledged(clientId, try reply.decode(MessageAck.self).message)
                } catch {
                    outboxFailed(clientId, error: ClientError(.badResponse, "the ack of a message cannot be read", cause: error))
                }
            case .failure(let error):
                outboxFailed(clientId, error: error)
            }
        case .join(let roomId, let generation):
            switch result.flatMap({ joinAnswer($0, to: roomId) }) {
            case .success(let ack):
                joined(ack.room, lastSeq: ack.lastSeq, online: ack.online, link: link, generation: generation)
                if ack.truncated {
                    logger.info(
                        "the replay was truncated; reading the rest over HTTP",
                        metadata: ["switchboard.room": "\(roomId)", "switchboard.lastSeq": "\(ack.lastSeq)"]
                    )
                }
            case .failure(let error):
                // The answer to the join of an earlier subscription to the room (unsubscribed since) is stale.
                guard state.withLock({ $0.subscriptions.rooms[roomId]?.generation == generation }) else { return }
                if error.isTransient {
                    retryJoinLater(roomId)
                } else {
                    joinRefused(roomId, error: error)
                }
            }
        }
    }

    /// The answer to the join of `roomId`, read. One that cannot be read, or that names another room, is a
    /// `badResponse`: the join is refused (asking the same server again would get the same answer), rather than
    /// leave the subscribe waiting for an answer that came.
    private func joinAnswer(_ reply: ServerEvent.Reply, to roomId: String) -> Result<JoinAnswer, ClientError> {
        let ack: JoinAnswer
        do {
            ack = try reply.decode(JoinAnswer.self)
        } catch {
            return .failure(ClientError(.badResponse, "the server's answer to the join of room \(roomId) cannot be read", cause: error))
        }
        guard ack.room.id == roomId else {
            return .failure(ClientError(.badResponse, "the server answered the join of room \(roomId) with room \(ack.room.id)"))
        }
        return .success(ack)
    }

    /// A room was joined (or read, when polling): recovery starts from its newest `seq`.
    ///
    /// - Parameter generation: The subscription the join was for; an answer for an earlier one (the room was
    ///   unsubscribed and subscribed again since) changes nothing. Checked under the same lock as the change.
    func joined(_ room: Room, lastSeq: Int? = nil, online: [String]? = nil, link: Int, generation: Int? = nil) {
        let waiters = withState { state -> [Waiters.Continuation] in
            guard let current = state.subscriptions.rooms[room.id] else { return [] }
            if let generation, current.generation != generation { return [] }
            let lastSeq = lastSeq ?? room.lastSeq
            state.subscriptions.rooms[room.id]!.room = room
            state.subscriptions.rooms[room.id]!.joinedOn = link
            state.subscriptions.rooms[room.id]!.catchingUpTo = lastSeq
            state.directory.learn(room)
            if let online { state.directory.online.formUnion(online) }
            apply(state.subscriptions.rooms[room.id]!.timeline.joined(lastSeq: lastSeq), roomId: room.id, state: &state)
            return state.waiters.take(.join(roomId: room.id))
        }
        for case .subscription(let waiter) in waiters { waiter.resume(returning: room) }
    }

    /// A join failed for a passing reason: try it again in a second, on the same connection.
    func retryJoinLater(_ roomId: String) {
        let bell = withState { state -> Doorbell? in
            state.subscriptions.rooms[roomId]?.joinSentOn = nil
            state.subscriptions.rooms[roomId]?.retryJoinAt = .now + .seconds(1)
            return state.connection.link?.joinBell
        }
        bell?.ring()
    }

    /// The rooms to join on `link` now (marked as sent), and when the next one waiting for a retry is due.
    func takeRoomsToJoin(on link: Int) -> (leaves: [String], rooms: [(roomId: String, since: Int?, generation: Int)], nextRetry: ContinuousClock.Instant?) {
        let now = ContinuousClock.now
        return withState { state in
            // Leaves and joins are taken together so that one task writes them in the order they were asked for.
            let leaves = state.subscriptions.leaves
            state.subscriptions.leaves = []
            var rooms: [(roomId: String, since: Int?, generation: Int)] = []
            var nextRetry: ContinuousClock.Instant?
            for (roomId, room) in state.subscriptions.rooms.sorted(by: { $0.key < $1.key }) where room.joinSentOn != link {
                if let retry = room.retryJoinAt, retry > now {
                    nextRetry = min(nextRetry ?? retry, retry)
                    continue
                }
                state.subscriptions.rooms[roomId]?.joinSentOn = link
                state.subscriptions.rooms[roomId]?.retryJoinAt = nil
                rooms.append((roomId, room.timeline.since, room.generation))
            }
            return (leaves, rooms, nextRetry)
        }
    }

    /// A room cannot be joined (not a member, no such room): the subscription ends.
    func joinRefused(_ roomId: String, error: ClientError) {
        logger.warning("cannot join a room", metadata: ["switchboard.room": "\(roomId)", "switchboard.error": "\(error)"])
        Waiters.fail(withState { endSubscription(roomId, error: error, state: &$0) }, with: error)
        checkReady()
    }

    /// Ends a room's subscription for a reason of the server's; returns the callers waiting for its join.
    private func endSubscription(_ roomId: String, error: ClientError, state: inout State) -> [Waiters.Continuation] {
        guard state.subscriptions.rooms.removeValue(forKey: roomId) != nil else { return [] }
        emit(.subscriptionEnded(roomId: roomId, error))
        return state.waiters.take(.join(roomId: roomId))
    }

    /// Hands over what a timeline decided, asks for history when it needs some, and says when the room
    /// has caught up. Call it with the lock held.
    func apply(_ output: RoomTimeline.Output, roomId: String, state: inout State) {
        for message in output.deliver { emit(.message(message)) }
        if let skipped = output.skipped {
            logger.error("messages could not be recovered and were skipped", metadata: ["switchboard.room": "\(roomId)", "switchboard.seqs": "\(skipped)"])
            emit(.gap(roomId: roomId, seqs: skipped))
        }
        if let after = output.fetchAfter {
            fetchContinuation.yield(FetchRequest(roomId: roomId, after: after, delay: nil))
        }
        if let target = state.subscriptions.rooms[roomId]?.catchingUpTo, let delivered = state.subscriptions.rooms[roomId]?.timeline.delivered, delivered >= target {
            state.subscriptions.rooms[roomId]?.catchingUpTo = nil
            emit(.caughtUp(roomId: roomId, seq: delivered))
            emitReadyIfDue(state: &state)
        }
    }

    /// Sends `ready` once per connection, when every followed room has caught up (and, when following
    /// every room, the rooms were listed).
    func emitReadyIfDue(state: inout State) {
        guard let link = state.connection.link, state.subscriptions.follow.readyOn != link.id else { return }
        if state.subscriptions.follow.all && state.subscriptions.follow.listedOn != link.id { return }
        let waiting = state.subscriptions.rooms.values.contains { $0.joinedOn != link.id || $0.catchingUpTo != nil }
        guard !waiting else { return }
        state.subscriptions.follow.readyOn = link.id
        emit(.ready)
    }

    /// ``emitReadyIfDue(state:)`` under the lock.
    func checkReady() {
        withState { emitReadyIfDue(state: &$0) }
    }

    /// When following every room: lists the user's rooms once per connection and follows those not followed
    /// yet, from the position store's `seq` or else from their newest.
    ///
    /// - Returns: When to try again, after a failure; `nil` when done or not due. One attempt only, so that the
    ///   caller sends the joins and leaves asked for meanwhile: a listing that keeps failing (the position store
    ///   down) must not hold up the rooms subscribed to by hand.
    func listRoomsToFollow(on link: Int) async -> ContinuousClock.Instant? {
        let due = state.withLock { $0.subscriptions.follow.all && $0.subscriptions.follow.listedOn != link && $0.connection.link?.id == link }
        guard due else { return nil }
        do {
            let token = try await token()
            let summaries = try await api.rooms(token: token)
            var stored: [String: Int] = [:]
            for summary in summaries {
                if let position = try await startPosition(of: summary.room.id) { stored[summary.room.id] = position }
            }
            withState { state in
                guard state.connection.link?.id == link else { return }
                for summary in summaries {
                    state.directory.learn(summary.room)
                    let id = summary.room.id
                    guard state.subscriptions.rooms[id] == nil, !state.subscriptions.follow.excluded.contains(id) else { continue }
                    // With no stored position: from its newest, unless it appeared during the listing (a new
                    // room whose first message the listing's `lastSeq` may already count).
                    let newest = min(state.subscriptions.follow.appeared[id] ?? summary.room.lastSeq, summary.room.lastSeq)
                    follow(id, after: stored[id] ?? newest, state: &state)
                }
                // Rooms that appeared after the listing was read: followed from the moment they appeared.
                for (id, lastSeq) in state.subscriptions.follow.appeared.sorted(by: { $0.key < $1.key })
                where state.subscriptions.rooms[id] == nil && !state.subscriptions.follow.excluded.contains(id) {
                    follow(id, after: lastSeq, state: &state)
                }
                state.subscriptions.follow.appeared = [:]
                state.subscriptions.follow.listedOn = link
                emitReadyIfDue(state: &state)
            }
            logger.debug("following every room", metadata: ["switchboard.rooms": "\(summaries.count)"])
            return nil
        } catch {
            if Task.isCancelled { return nil }
            logger.warning("cannot list the rooms to follow; trying again", metadata: ["switchboard.error": "\(error)"])
            return .now + .seconds(1)
        }
    }

    /// The `seq` to follow a room after, from the position store; `nil` without one or without a position.
    func startPosition(of roomId: String) async throws -> Int? {
        guard let store = configuration.positions else { return nil }
        do {
            return try await store.position(in: roomId)
        } catch {
            throw ClientError(.storage, "cannot read the position of room \(roomId)", cause: error)
        }
    }

    // MARK: Outbox outcomes

    /// What settling one message of the outbox leaves to do outside the lock.
    struct Settled {
        var senders: [Waiters.Continuation] = []
        var clientId: String
        /// Whether the message left the outbox (and is struck from its file).
        var removed = true
        var flushes: [Waiters.Continuation] = []
        var bell: Doorbell?
    }

    /// A message left the outbox: takes its senders, and the flush waiters if the outbox is now empty.
    func settle(_ clientId: String, in state: inout State) -> Settled {
        var settled = Settled(clientId: clientId, bell: state.connection.link?.outboxBell)
        settled.senders = state.waiters.take(.send(clientId: clientId))
        if state.outbox.isEmpty { settled.flushes = state.waiters.take(.flush) }
        return settled
    }

    /// Rings the outbox, writes its file, and tells the senders and flush waiters.
    func finish(_ settled: Settled, with result: Result<Message, ClientError>) {
        settled.bell?.ring()
        if let outboxFile, settled.removed {
            do {
                try outboxFile.remove(settled.clientId)
            } catch {
                logger.error("cannot write the outbox file", metadata: ["switchboard.error": "\(error)"])
            }
        }
        for case .message(let sender) in settled.senders { sender.resume(with: result.mapError { $0 as any Error }) }
        for case .flush(let flush) in settled.flushes { flush.resume() }
    }

    /// The server stored a message of the outbox.
    func outboxAcknowledged(_ clientId: String, _ message: Message) {
        let settled = withState { state -> Settled? in
            guard state.outbox.acknowledged(clientId) != nil else { return nil }
            emit(.messageSent(message))
            return settle(clientId, in: &state)
        }
        if let settled { finish(settled, with: .success(message)) }
    }

    /// The server, or the way to it, failed on a message of the outbox.
    func outboxFailed(_ clientId: String, error: ClientError) {
        let now = ContinuousClock.now
        let (dropped, settled) = withState { state -> (PendingMessage?, Settled) in
            var dropped: PendingMessage?
            switch error.code {
            case .rateLimited:
                let wait = Duration.milliseconds(error.protocolError?.retryAfterMs ?? 1000)
                logger.debug("rate limited; the outbox waits", metadata: ["switchboard.wait": "\(wait.formattedSeconds)"])
                state.outbox.rateLimited(clientId, retryAfter: wait, at: now)
            case .server:
                dropped = state.outbox.serverFailed(clientId, retryAfter: .seconds(1), at: now)
            case _ where error.isTransient:
                state.outbox.rateLimited(clientId, retryAfter: .seconds(1), at: now)
            default:
                dropped = state.outbox.refused(clientId)
            }
            guard let dropped else { return (nil, Settled(clientId: clientId, removed: false, bell: state.connection.link?.outboxBell)) }
            emit(.messageRejected(dropped, error))
            return (dropped, settle(clientId, in: &state))
        }
        if let dropped {
            logger.warning("a message was refused and dropped", metadata: ["switchboard.clientId": "\(dropped.clientId)", "switchboard.error": "\(error)"])
        }
        finish(settled, with: .failure(error))
    }

    // MARK: History

    /// Reads the history pages that timelines ask for, several rooms at once.
    func fetchWorker() async {
        await withDiscardingTaskGroup { group in
            for await request in fetches {
                group.addTask { await self.fetch(request) }
            }
        }
    }

    func fetch(_ request: FetchRequest) async {
        if let delay = request.delay {
            try? await Task.sleep(for: delay)
            if Task.isCancelled { return }
        }
        do {
            let token = try await self.token()
            let page = try await api.history(roomId: request.roomId, after: request.after, before: nil, limit: configuration.historyPageSize, token: token)
            logger.debug(
                "read a page of history",
                metadata: ["switchboard.room": "\(request.roomId)", "switchboard.after": "\(request.after)", "switchboard.count": "\(page.messages.count)"]
            )
            withState { state in
                guard state.subscriptions.rooms[request.roomId] != nil else { return }
                apply(
                    state.subscriptions.rooms[request.roomId]!.timeline.page(after: request.after, page.messages, hasMore: page.hasMore),
                    roomId: request.roomId, state: &state
                )
            }
            // Back-pressure: read no more history while the application has not taken what came.
            await bus.waitForSpace()
        } catch {
            if Task.isCancelled || error.code == .shutdown { return }
            // An expired or revoked token: the connection finds out too, and either logs in again or stops the
            // client. Meanwhile the page is asked for again, so that the room's recovery does not stall.
            guard error.isTransient || error.code == .unauthorized else {
                // The room cannot be read (the user was removed, the room is gone): waiting will not help.
                return joinRefused(request.roomId, error: error)
            }
            let delay = Duration.seconds(min(30, 1 << min(request.attempt, 5)))
            logger.debug(
                "cannot read history; trying again",
                metadata: ["switchboard.room": "\(request.roomId)", "switchboard.error": "\(error)", "switchboard.wait": "\(delay.formattedSeconds)"]
            )
            withState { state in
                guard state.subscriptions.rooms[request.roomId] != nil else { return }
                let output = state.subscriptions.rooms[request.roomId]!.timeline.pageFailed()
                if let after = output.fetchAfter {
                    fetchContinuation.yield(FetchRequest(roomId: request.roomId, after: after, delay: delay, attempt: request.attempt + 1))
                }
            }
        }
    }
}
