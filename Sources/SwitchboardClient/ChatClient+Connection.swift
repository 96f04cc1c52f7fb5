import Logging
import NIOCore
import Synchronization
import SwitchboardProtocol
import WSClient

extension ChatClient {
    /// Drives ``ConnectionStateMachine``: performs each action and reports its outcome, until the
    /// client stops or fails for good.
    func connectionLoop() async {
        var generator = SystemRandomNumberGenerator()
        var action = withState { $0.connection.machine.start() }
        while !Task.isCancelled {
            logger.trace("connection action", metadata: ["switchboard.action": "\(action)"])
            switch action {
            case .authenticate:
                action = await authenticate(using: &generator)
            case .connectWebSocket:
                action = await runWebSocket(using: &generator)
            case .startPolling:
                action = await runPolling(using: &generator)
            case .wait(let delay):
                try? await Task.sleep(for: delay)
                action = withState { $0.connection.machine.waitElapsed() }
            case .fail(let error):
                failForGood(error)
                return
            case .stop:
                return
            }
        }
    }

    /// Logs in with the password, or checks the token; learns who the user is.
    private func authenticate(using generator: inout SystemRandomNumberGenerator) async -> ConnectionStateMachine.Action {
        do throws(ClientError) {
            let user: User
            let token: String
            switch configuration.credentials {
            case .token(let given):
                user = try await api.me(token: given)
                token = given
            case .password(let username, let password):
                let answer = try await api.login(username: username, password: password)
                user = answer.user
                token = answer.token
            }
            logger.debug("authenticated", metadata: ["switchboard.user": "\(user.username)"])
            let waiters = withState { state in
                state.connection.token = token
                state.connection.user = user
                state.directory.learn(user)
                return state.waiters.take(.token)
            }
            for case .token(let waiter) in waiters { waiter.resume(returning: token) }
            return withState { $0.connection.machine.authenticated(at: .now) }
        } catch {
            if Task.isCancelled { return .stop }
            logger.debug("authentication failed", metadata: ["switchboard.error": "\(error)"])
            let failure: ConnectionStateMachine.ConnectFailure = error.code == .unauthorized ? .unauthorized : .unreachable
            return withState { $0.connection.machine.authenticationFailed(failure, using: &generator) }
        }
    }

    /// The client failed for good: everything waiting is told, and the client stops.
    private func failForGood(_ error: ClientError) {
        logger.error("the client stopped for good", metadata: ["switchboard.error": "\(error)"])
        Waiters.fail(withState { $0.takeAllWaiters() }, with: error)
        stopRequested.fire()
    }

    /// Closes the open WebSocket with 1000, so that the server sees a clean goodbye.
    func closeLinkGracefully() async {
        let link = state.withLock { $0.connection.link }
        if let link, case .webSocket(let writer) = link.kind {
            try? await writer.close(.normalClosure, reason: "client disconnected")
        }
    }

    // MARK: WebSocket

    /// The client's connection relay, started on first use; `nil` (connect directly) if it cannot start.
    private func relay() async -> ConnectionRelay? {
        if let relay = relayBox.withLock({ $0 }) { return relay }
        guard let (host, port) = configuration.webSocketHostAndPort else { return nil }
        do {
            let relay = try await ConnectionRelay.start(
                target: host, port: port, connectTimeout: configuration.connectTimeout, eventLoopGroup: eventLoopGroup, logger: logger
            )
            relayBox.withLock { $0 = relay }
            return relay
        } catch {
            logger.warning("cannot start the connection relay; connecting directly", metadata: ["switchboard.error": "\(error)"])
            return nil
        }
    }

    /// What one WebSocket attempt found out, shared between its tasks.
    private final class Attempt: Sendable {
        struct State {
            var opened = false
            var finished = false
            var heartbeatTimedOut = false
            /// The reader waits for the application to take events: silence is then not a death.
            var readerPaused = false
            /// The outbox's messages in flight when the connection ended.
            var inFlight: [String] = []
        }
        let state = Mutex(State())
        var opened: Bool { state.withLock { $0.opened } }
    }

    /// Opens the WebSocket, runs it until it ends, and reports the outcome to the state machine.
    private func runWebSocket(using generator: inout SystemRandomNumberGenerator) async -> ConnectionStateMachine.Action {
        guard let token = state.withLock({ $0.connection.token }) else {
            return withState { $0.connection.machine.webSocketFailed(.unauthorized, using: &generator) }
        }
        let linkID = withState { state in
            state.connection.nextLinkID += 1
            return state.connection.nextLinkID
        }
        let attempt = Attempt()
        let webSocketConfiguration = WebSocketClientConfiguration(
            maxFrameSize: configuration.maxFrameSize,
            additionalHeaders: [.authorization: "Bearer \(token)"],
            closeTimeout: .seconds(1)
        )
        let url = configuration.webSocketURL
        let connectTimeout = configuration.connectTimeout
        let relay = await self.relay()
        var logger = self.logger
        logger[metadataKey: "switchboard.link"] = "\(linkID)"
        let connectionLogger = logger
        logger.debug("opening the WebSocket", metadata: ["switchboard.url": "\(url)"])

        let outcome: Result<WebSocketCloseFrame?, any Error> = await withTaskGroup(of: Result<WebSocketCloseFrame?, any Error>?.self) { group in
            group.addTask {
                do {
                    let handler: WebSocketDataHandler<WebSocketClient.Context> = { inbound, outbound, _ in
                        await self.runSession(linkID: linkID, inbound: inbound, outbound: outbound, attempt: attempt, relay: relay, logger: connectionLogger)
                    }
                    let closeFrame: WebSocketCloseFrame?
                    if let relay {
                        let proxy = WebSocketProxySettings(
                            host: "127.0.0.1", port: relay.port, type: .http(connectHeaders: [.proxyAuthorization: relay.secret]),
                            timeout: connectTimeout
                        )
                        closeFrame = try await WebSocketClient.connect(
                            url: url, configuration: webSocketConfiguration, proxySettings: proxy, eventLoopGroup: self.eventLoopGroup,
                            logger: connectionLogger, handler: handler
                        )
                    } else {
                        closeFrame = try await WebSocketClient.connect(
                            url: url, configuration: webSocketConfiguration, eventLoopGroup: self.eventLoopGroup, logger: connectionLogger,
                            handler: handler
                        )
                    }
                    attempt.state.withLock { $0.finished = true }
                    return .success(closeFrame)
                } catch {
                    attempt.state.withLock { $0.finished = true }
                    return .failure(error)
                }
            }
            group.addTask {
                // An upgrade under way when the client stops is cut at the relay (see ConnectionRelay for why
                // the library cannot be asked to stop; the relay itself cuts one the server leaves unanswered).
                while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
                if attempt.state.withLock({ !$0.opened && !$0.finished }) {
                    connectionLogger.debug("the client stops during a WebSocket upgrade; cutting it")
                    relay?.cutAll()
                }
                return nil
            }
            var outcome: Result<WebSocketCloseFrame?, any Error> = .failure(CancellationError())
            while let next = await group.next() {
                if let next {
                    outcome = next
                    group.cancelAll()
                }
            }
            return outcome
        }

        // A connection that ends because the client stops is not a drop: no reconnecting status.
        if Task.isCancelled || state.withLock({ $0.lifecycle.stopping }) { return .stop }
        if attempt.opened {
            let closeCode: UInt16? =
                switch outcome {
                case .success(let frame?): closeCode(of: frame)
                default: nil
                }
            let (timedOut, inFlight) = attempt.state.withLock { ($0.heartbeatTimedOut, $0.inFlight) }
            if closeCode == CloseCode.tooLarge.rawValue, let culprit = inFlight.first {
                // The server's frame limit is below the client's maxMessageBytes: sending the message again
                // would be closed again, forever, with every message behind it waiting. It is refused for good.
                outboxFailed(
                    culprit,
                    error: ClientError(
                        .invalid,
                        "the server closed the connection (1009) for a message larger than its frame limit (--max-frame-bytes); set maxMessageBytes to that limit"
                    )
                )
            }
            let ending: ConnectionStateMachine.Ending =
                closeCode == CloseCode.unauthorized.rawValue ? .unauthorized : timedOut ? .heartbeatTimeout : .dropped
            logger.info(
                "the WebSocket closed",
                metadata: ["switchboard.close.code": "\(closeCode.map(String.init) ?? "none")", "switchboard.ending": "\(ending)"]
            )
            return withState { $0.connection.machine.webSocketEnded(ending, at: .now, using: &generator) }
        }

        // It never opened. HTTP tells why: a refused token, a WebSocket-hostile network, or a server that is down.
        if case .failure(let error) = outcome {
            logger.debug("the WebSocket did not open", metadata: ["switchboard.error": "\(error)"])
        }
        let failure: ConnectionStateMachine.ConnectFailure
        do throws(ClientError) {
            _ = try await api.me(token: token)
            failure = .webSocketUnavailable
            logger.notice("the WebSocket did not open while HTTP works")
        } catch {
            if Task.isCancelled { return .stop }
            failure = error.code == .unauthorized ? .unauthorized : .unreachable
        }
        return withState { $0.connection.machine.webSocketFailed(failure, using: &generator) }
    }

    /// One open WebSocket: reads frames, keeps the heartbeat, joins rooms and sends the outbox,
    /// until the connection ends or one of those finds it dead.
    private func runSession(
        linkID: Int, inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, attempt: Attempt, relay: ConnectionRelay?, logger: Logger
    ) async {
        attempt.state.withLock { $0.opened = true }
        let link = Link(id: linkID, kind: .webSocket(outbound), outboxBell: Doorbell(), joinBell: Doorbell())
        let openedAt = ContinuousClock.now
        withState { state in
            state.connection.machine.webSocketOpened(at: openedAt)
            state.connection.link = link
        }
        logger.info("the WebSocket is open")
        let monitor = Locked(HeartbeatMonitor(interval: configuration.heartbeat.interval, timeout: configuration.heartbeat.timeout, now: openedAt))

        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    for try await message in inbound.messages(maxSize: self.configuration.maxFrameSize) {
                        monitor.withLock { $0.received(at: .now) }
                        switch message {
                        case .text(let text): self.handleFrame(Array(text.utf8), link: linkID)
                        case .binary: logger.debug("ignoring a binary frame")
                        }
                        // Back-pressure: read no more while the application has not taken what came, unless
                        // an answer is awaited (see `EventBuffers.overflow`).
                        if self.bus.isBeyondCapacity {
                            self.withState { state in self.bus.allowOverflow(state.requests.awaitsAnswers(on: linkID)) }
                            if self.bus.isFull {
                                attempt.state.withLock { $0.readerPaused = true }
                                await self.bus.waitForSpace()
                                attempt.state.withLock { $0.readerPaused = false }
                                monitor.withLock { $0.received(at: .now) }
                            }
                        }
                    }
                } catch {
                    logger.debug("the WebSocket failed", metadata: ["switchboard.error": "\(error)"])
                }
            }
            group.addTask {
                while !Task.isCancelled {
                    let deadline = monitor.withLock { $0.nextCheck }
                    try? await Task.sleep(until: deadline, clock: .continuous)
                    if Task.isCancelled { return }
                    if attempt.state.withLock({ $0.readerPaused }) {
                        // The reader is not reading, so frames are not counted: not a dead connection.
                        monitor.withLock { $0.received(at: .now) }
                        continue
                    }
                    switch monitor.withLock({ $0.check(at: .now) }) {
                    case .none: break
                    case .sendPing:
                        logger.trace("the connection is quiet; pinging")
                        // Not registered as pending: any frame, the pong included, is the answer.
                        let ref = self.withState { $0.requests.makeRef("p") }
                        try? await outbound.write(.text(Wire.encodeString(Envelope<EmptyData>(type: .ping, data: EmptyData(), ref: ref))))
                    case .dead:
                        logger.warning("no answer to a ping: the connection is dead")
                        attempt.state.withLock { $0.heartbeatTimedOut = true }
                        // A dead connection cannot complete a close handshake: cut it.
                        relay?.cutAll()
                        return
                    }
                }
            }
            group.addTask { await self.joinRoomsOverWebSocket(link, outbound: outbound) }
            group.addTask { await self.sendOutboxOverWebSocket(link, outbound: outbound) }
            // The first task to end (the reader at a close, the heartbeat at a death) ends the session.
            await group.next()
            group.cancelAll()
        }
        let inFlight = endLink(linkID)
        attempt.state.withLock { $0.inFlight = inFlight }
    }

    /// Sends a `join` for every subscribed room not yet joined on this connection, again whenever rung.
    private func joinRoomsOverWebSocket(_ link: Link, outbound: WebSocketOutboundWriter) async {
        checkReady()
        while !Task.isCancelled {
            let listingRetry = await listRoomsToFollow(on: link.id)
            let (leaves, rooms, nextRetry) = takeRoomsToJoin(on: link.id)
            for roomId in leaves {
                let ref = withState { state in
                    let ref = state.requests.makeRef("l")
                    register(PendingRequest(link: link.id, kind: .ignore), ref: ref, state: &state)
                    return ref
                }
                do {
                    try await outbound.write(.text(Wire.encodeString(Envelope<EmptyData>(type: .leave, roomId: roomId, ref: ref))))
                } catch {
                    return
                }
            }
            for room in rooms {
                let ref = withState { state in
                    let ref = state.requests.makeRef("j")
                    register(PendingRequest(link: link.id, kind: .join(roomId: room.roomId, generation: room.generation)), ref: ref, state: &state)
                    return ref
                }
                logger.debug("joining", metadata: ["switchboard.room": "\(room.roomId)", "switchboard.since": "\(room.since.map(String.init) ?? "live")"])
                let envelope = Envelope(type: .join, roomId: room.roomId, data: JoinData(since: room.since), ref: ref)
                do {
                    try await outbound.write(.text(Wire.encodeString(envelope)))
                } catch {
                    return
                }
            }
            await link.joinBell.wait(untilEarliestOf: nextRetry, listingRetry)
        }
    }

    /// Sends the outbox in order, at most `maxInFlight` unanswered, pausing when rate limited.
    private func sendOutboxOverWebSocket(_ link: Link, outbound: WebSocketOutboundWriter) async {
        while !Task.isCancelled {
            let next = withState { state -> OutboxMachine.Next in
                let next = state.outbox.next(at: .now)
                if case .send(let message) = next {
                    register(PendingRequest(link: link.id, kind: .outbox(clientId: message.clientId)), ref: "o:" + message.clientId, state: &state)
                }
                return next
            }
            switch next {
            case .send(let message):
                let envelope = Envelope(type: .message, roomId: message.roomId, data: message.data, ref: "o:" + message.clientId)
                do {
                    try await outbound.write(.text(Wire.encodeString(envelope)))
                } catch {
                    return
                }
            case .wait(let until):
                await link.outboxBell.wait(until: until)
            case .idle:
                await link.outboxBell.wait()
            }
        }
    }

    /// The connection ended: what was in flight goes back to the outbox, requests waiting for an
    /// answer fail, and rooms will be joined again on the next connection.
    ///
    /// - Returns: The messages that were in flight on it, oldest first.
    @discardableResult
    func endLink(_ linkID: Int) -> [String] {
        let (calls, inFlight) = withState { state -> ([Waiters.Continuation], [String]) in
            guard state.connection.link?.id == linkID else { return ([], []) }
            state.connection.link = nil
            let inFlight = state.outbox.inFlightIDs
            state.outbox.connectionLost()
            var calls: [Waiters.Continuation] = []
            for (ref, request) in state.requests.pending where request.link == linkID {
                // An answer that came before its caller waited for it is kept for the caller.
                if case .answered = request.kind { continue }
                state.requests.pending[ref] = nil
                if case .call = request.kind { calls += state.waiters.take(.call(ref: ref)) }
            }
            state.subscriptions.leaves = []
            for key in state.subscriptions.rooms.keys {
                state.subscriptions.rooms[key]?.joinSentOn = nil
                state.subscriptions.rooms[key]?.joinedOn = nil
                state.subscriptions.rooms[key]?.retryJoinAt = nil
            }
            state.subscriptions.follow.listedOn = nil
            // The next connection's listing finds the rooms the user is still in.
            state.subscriptions.follow.appeared = [:]
            return (calls, inFlight)
        }
        Waiters.fail(calls, with: ClientError(.connectionLost, "the connection ended before the answer came"))
        return inFlight
    }
}

/// The numeric code of a close frame.
func closeCode(of frame: WebSocketCloseFrame) -> UInt16 {
    switch frame.closeCode {
    case .normalClosure: 1000
    case .goingAway: 1001
    case .protocolError: 1002
    case .unacceptableData: 1003
    case .dataInconsistentWithMessage: 1007
    case .policyViolation: 1008
    case .messageTooLarge: 1009
    case .missingExtension: 1010
    case .unexpectedServerError: 1011
    case .unknown(let code): code
    }
}
