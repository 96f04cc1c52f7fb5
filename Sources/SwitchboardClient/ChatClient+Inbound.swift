import Logging
import SwitchboardProtocol

extension ChatClient {
    /// Handles one envelope from the server, from the WebSocket or a poll.
    func handleFrame(_ bytes: [UInt8], link: Int) {
        let event: ServerEvent
        do {
            event = try ServerEvent(bytes: bytes)
        } catch {
            logger.warning("ignoring a frame that cannot be read", metadata: ["switchboard.error": "\(error)"])
            return
        }
        switch event {
        case .message(let message):
            withState { state in
                guard state.rooms[message.roomId] != nil else { return }
                apply(state.rooms[message.roomId]!.timeline.received(message), roomId: message.roomId, state: &state)
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
            withState { _ in emit(.presence(PresenceEvent(userId: userId, status: status))) }
        case .join(let roomId, let user):
            emitIfSubscribed(roomId, .memberJoined(roomId: roomId, user: user))
        case .leave(let roomId, let user):
            emitIfSubscribed(roomId, .memberLeft(roomId: roomId, user: user))
        case .room(let data):
            withState { _ in emit(.room(data)) }
        case .ack(let reply):
            answered(ref: reply.ref, link: link, .success(reply))
        case .error(let ref, let roomId, let error):
            if ref == nil {
                logger.warning("the server reported an error", metadata: ["switchboard.error": "\(error)", "switchboard.room": "\(roomId ?? "")"])
            }
            answered(ref: ref, link: link, .failure(error))
        case .pong:
            break
        case .other(_, let envelope):
            withState { _ in emit(.unknown(envelope)) }
        }
    }

    private func emitIfSubscribed(_ roomId: String, _ event: ClientEvent) {
        withState { state in
            if state.rooms[roomId] != nil { emit(event) }
        }
    }

    /// The answer to a request of ours.
    private func answered(ref: String?, link: Int, _ result: Result<ServerEvent.Reply, ProtocolError>) {
        guard let ref else { return }
        let request = withState { state -> PendingRequest? in
            guard let request = state.pending[ref], request.link == link else { return nil }
            if case .awaiting = request.kind {
                // The caller has not started waiting yet: keep the answer for it, under the same lock.
                state.pending[ref] = PendingRequest(link: link, kind: .answered(result))
                return nil
            }
            state.pending[ref] = nil
            return request
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
        case .call(let continuation):
            continuation.resume(with: result.mapError { ClientError($0) as any Error })
        case .outbox(let clientId):
            switch result {
            case .success(let reply):
                do {
                    outboxAcknowledged(clientId, try reply.decode(MessageAck.self).message)
                } catch {
                    outboxFailed(clientId, error: ClientError(.badResponse, "the ack of a message cannot be read", cause: error))
                }
            case .failure(let error):
                outboxFailed(clientId, error: ClientError(error))
            }
        case .join(let roomId, let generation):
            // The answer to the join of an earlier subscription to the room (unsubscribed since) is stale.
            guard state.withLock({ $0.rooms[roomId]?.generation == generation }) else { return }
            switch result {
            case .success(let reply):
                do {
                    let ack = try reply.decode(JoinAck.self)
                    joined(ack.room, lastSeq: ack.lastSeq, link: link)
                    if ack.truncated {
                        logger.info(
                            "the replay was truncated; reading the rest over HTTP",
                            metadata: ["switchboard.room": "\(roomId)", "switchboard.lastSeq": "\(ack.lastSeq)"]
                        )
                    }
                } catch {
                    logger.error("the ack of a join cannot be read", metadata: ["switchboard.error": "\(error)"])
                }
            case .failure(let error):
                let clientError = ClientError(error)
                if clientError.isTransient {
                    retryJoinLater(roomId)
                } else {
                    joinRefused(roomId, error: clientError)
                }
            }
        }
    }

    /// A room was joined (or read, when polling): recovery starts from its newest `seq`.
    func joined(_ room: Room, lastSeq: Int? = nil, link: Int) {
        let waiters = withState { state -> [CheckedContinuation<Room, any Error>] in
            guard state.rooms[room.id] != nil else { return [] }
            state.rooms[room.id]!.room = room
            state.rooms[room.id]!.joinedOn = link
            apply(state.rooms[room.id]!.timeline.joined(lastSeq: lastSeq ?? room.lastSeq), roomId: room.id, state: &state)
            defer { state.rooms[room.id]!.waiters = [:] }
            return Array(state.rooms[room.id]!.waiters.values)
        }
        for waiter in waiters { waiter.resume(returning: room) }
    }

    /// A join failed for a passing reason: try it again in a second, on the same connection.
    func retryJoinLater(_ roomId: String) {
        let bell = withState { state -> Doorbell? in
            state.rooms[roomId]?.joinSentOn = nil
            state.rooms[roomId]?.retryJoinAt = .now + .seconds(1)
            return state.link?.joinBell
        }
        bell?.ring()
    }

    /// The rooms to join on `link` now (marked as sent), and when the next one waiting for a retry is due.
    func takeRoomsToJoin(on link: Int) -> (leaves: [String], rooms: [(roomId: String, since: Int?, generation: Int)], nextRetry: ContinuousClock.Instant?) {
        let now = ContinuousClock.now
        return withState { state in
            // Leaves and joins are taken together so that one task writes them in the order they were asked for.
            let leaves = state.leaves
            state.leaves = []
            var rooms: [(roomId: String, since: Int?, generation: Int)] = []
            var nextRetry: ContinuousClock.Instant?
            for (roomId, room) in state.rooms.sorted(by: { $0.key < $1.key }) where room.joinSentOn != link {
                if let retry = room.retryJoinAt, retry > now {
                    nextRetry = min(nextRetry ?? retry, retry)
                    continue
                }
                state.rooms[roomId]?.joinSentOn = link
                state.rooms[roomId]?.retryJoinAt = nil
                rooms.append((roomId, room.timeline.since, room.generation))
            }
            return (leaves, rooms, nextRetry)
        }
    }

    /// A room cannot be joined (not a member, no such room): the subscription ends.
    func joinRefused(_ roomId: String, error: ClientError) {
        logger.warning("cannot join a room", metadata: ["switchboard.room": "\(roomId)", "switchboard.error": "\(error)"])
        let waiters = withState { state -> [CheckedContinuation<Room, any Error>] in
            guard let room = state.rooms.removeValue(forKey: roomId) else { return [] }
            emit(.subscriptionEnded(roomId: roomId, error))
            return Array(room.waiters.values)
        }
        for waiter in waiters { waiter.resume(throwing: error) }
    }

    /// Hands over what a timeline decided, and asks for history when it needs some. Call it with the lock held.
    func apply(_ output: RoomTimeline.Output, roomId: String, state: inout State) {
        for message in output.deliver { emit(.message(message)) }
        if let skipped = output.skipped {
            logger.error("messages could not be recovered and were skipped", metadata: ["switchboard.room": "\(roomId)", "switchboard.seqs": "\(skipped)"])
            emit(.gap(roomId: roomId, seqs: skipped))
        }
        if let after = output.fetchAfter {
            fetchContinuation.yield(FetchRequest(roomId: roomId, after: after, delay: nil))
        }
    }

    // MARK: Outbox outcomes

    /// What settling one message of the outbox leaves to do outside the lock.
    struct Settled {
        var senders: [CheckedContinuation<Message, any Error>] = []
        var clientId: String
        /// Whether the message left the outbox (and is struck from its file).
        var removed = true
        var flushes: [CheckedContinuation<Void, Never>] = []
        var bell: Doorbell?
    }

    /// A message left the outbox: takes its senders, and the flush waiters if the outbox is now empty.
    private func settle(_ clientId: String, in state: inout State) -> Settled {
        var settled = Settled(clientId: clientId, bell: state.link?.outboxBell)
        settled.senders = state.sendWaiters.removeValue(forKey: clientId).map { Array($0.values) } ?? []
        if state.outbox.isEmpty {
            settled.flushes = Array(state.flushWaiters.values)
            state.flushWaiters = [:]
        }
        return settled
    }

    /// Rings the outbox, writes its file, and tells the senders and flush waiters.
    private func finish(_ settled: Settled, with result: Result<Message, ClientError>) {
        settled.bell?.ring()
        if let outboxFile, settled.removed {
            do {
                try outboxFile.remove(settled.clientId)
            } catch {
                logger.error("cannot write the outbox file", metadata: ["switchboard.error": "\(error)"])
            }
        }
        for sender in settled.senders { sender.resume(with: result.mapError { $0 as any Error }) }
        for flush in settled.flushes { flush.resume() }
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
            guard let dropped else { return (nil, Settled(clientId: clientId, removed: false, bell: state.link?.outboxBell)) }
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

    private func fetch(_ request: FetchRequest) async {
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
                guard state.rooms[request.roomId] != nil else { return }
                apply(
                    state.rooms[request.roomId]!.timeline.page(after: request.after, page.messages, hasMore: page.hasMore),
                    roomId: request.roomId, state: &state
                )
            }
        } catch {
            if Task.isCancelled || error.code == .shutdown || error.code == .unauthorized { return }
            guard error.isTransient else {
                // The room cannot be read (the user was removed, the room is gone): waiting will not help.
                return joinRefused(request.roomId, error: error)
            }
            let delay = Duration.seconds(min(30, 1 << min(request.attempt, 5)))
            logger.debug(
                "cannot read history; trying again",
                metadata: ["switchboard.room": "\(request.roomId)", "switchboard.error": "\(error)", "switchboard.wait": "\(delay.formattedSeconds)"]
            )
            withState { state in
                guard state.rooms[request.roomId] != nil else { return }
                let output = state.rooms[request.roomId]!.timeline.pageFailed()
                if let after = output.fetchAfter {
                    fetchContinuation.yield(FetchRequest(roomId: request.roomId, after: after, delay: delay, attempt: request.attempt + 1))
                }
            }
        }
    }
}
