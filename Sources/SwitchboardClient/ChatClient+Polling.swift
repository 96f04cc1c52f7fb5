import Logging
import SwitchboardProtocol

extension ChatClient {
    /// Why a task of a polling session ended it.
    private enum PollTaskEnd: Sendable {
        case ending(ConnectionStateMachine.PollEnding)
    }

    /// Runs one long-polling session (the fallback when the WebSocket cannot be opened) until it
    /// fails, the token is refused, or it is time to try the WebSocket again.
    func runPolling(using generator: inout SystemRandomNumberGenerator) async -> ConnectionStateMachine.Action {
        guard let token = state.withLock({ $0.connection.token }) else {
            return withState { $0.connection.machine.pollingEnded(.unauthorized, using: &generator) }
        }
        let cursor: String
        do throws(ClientError) {
            // Without a cursor the server opens a session and answers at once.
            cursor = try await api.events(cursor: nil, wait: .zero, token: token).cursor
        } catch {
            if Task.isCancelled { return .stop }
            logger.debug("cannot open a polling session", metadata: ["switchboard.error": "\(error)"])
            return withState { $0.connection.machine.pollingEnded(error.code == .unauthorized ? .unauthorized : .failed, using: &generator) }
        }
        let link = withState { state in
            state.connection.nextLinkID += 1
            let link = Link(id: state.connection.nextLinkID, kind: .polling, outboxBell: Doorbell(), joinBell: Doorbell())
            state.connection.link = link
            state.connection.machine.pollingStarted()
            return link
        }
        logger.notice("long polling instead of the WebSocket", metadata: ["switchboard.link": "\(link.id)"])
        let retryEvery = configuration.fallback.retryWebSocketEvery

        let ending: ConnectionStateMachine.PollEnding? = await withTaskGroup(of: PollTaskEnd?.self) { group in
            group.addTask { await self.poll(from: cursor, link: link, token: token).map(PollTaskEnd.ending) }
            group.addTask { await self.joinRoomsOverHTTP(link, token: token).map(PollTaskEnd.ending) }
            group.addTask { await self.sendOutboxOverHTTP(link, token: token).map(PollTaskEnd.ending) }
            group.addTask {
                try? await Task.sleep(for: retryEvery)
                return Task.isCancelled ? nil : .ending(.retryWebSocket)
            }
            var ending: ConnectionStateMachine.PollEnding?
            while let next = await group.next() {
                if case .ending(let value)? = next, ending == nil {
                    ending = value
                    group.cancelAll()
                }
            }
            return ending
        }
        endLink(link.id)
        if Task.isCancelled { return .stop }
        logger.debug("the polling session ended", metadata: ["switchboard.ending": "\(ending.map { "\($0)" } ?? "none")"])
        return withState { $0.connection.machine.pollingEnded(ending ?? .failed, using: &generator) }
    }

    /// Polls `GET /api/events` and handles what comes as if it came over the WebSocket.
    private func poll(from cursor: String, link: Link, token: String) async -> ConnectionStateMachine.PollEnding? {
        var cursor = cursor
        let wait = min(configuration.fallback.pollTimeout, .seconds(60))
        var failures = 0
        while !Task.isCancelled {
            do throws(ClientError) {
                let answer = try await api.events(cursor: cursor, wait: wait, token: token)
                failures = 0
                withState { $0.connection.machine.pollAnswered() }
                cursor = answer.cursor
                for envelope in answer.events {
                    guard let bytes = try? Wire.encode(envelope) else { continue }
                    handleFrame(bytes, link: link.id)
                }
                // Back-pressure: poll no more while the application has not taken what came.
                await bus.waitForSpace()
            } catch {
                if Task.isCancelled || error.code == .shutdown { return nil }
                logger.debug("a poll failed", metadata: ["switchboard.error": "\(error)"])
                if error.code == .unauthorized { return .unauthorized }
                // The server answers the same cursor again with what a lost answer held: a passing
                // failure is retried with it, a few times, before the session is given up.
                failures += 1
                guard error.isTransient, failures <= 3 else { return .failed }
                try? await Task.sleep(for: .milliseconds(250 << failures))
            }
        }
        return nil
    }

    /// Reads each subscribed room (joining public ones), to learn its newest `seq` and recover what
    /// was missed; again whenever rung.
    private func joinRoomsOverHTTP(_ link: Link, token: String) async -> ConnectionStateMachine.PollEnding? {
        checkReady()
        while !Task.isCancelled {
            let listingRetry = await listRoomsToFollow(on: link.id)
            let (_, rooms, nextRetry) = takeRoomsToJoin(on: link.id)
            let me = state.withLock { $0.connection.user?.id }
            for (roomId, _, generation) in rooms {
                do throws(ClientError) {
                    var room = try await api.room(roomId, token: token)
                    if let me, !room.members.contains(me) {
                        // A WebSocket join makes the caller a member of a public room; do the same here.
                        room = try await api.addMember(roomId: roomId, userId: me, token: token)
                    }
                    joined(room, link: link.id, generation: generation)
                } catch {
                    if Task.isCancelled || error.code == .shutdown { return nil }
                    if error.code == .unauthorized { return .unauthorized }
                    if error.isTransient {
                        logger.debug("cannot read a room; trying again", metadata: ["switchboard.room": "\(roomId)", "switchboard.error": "\(error)"])
                        retryJoinLater(roomId)
                    } else {
                        joinRefused(roomId, error: error)
                    }
                }
            }
            await link.joinBell.wait(untilEarliestOf: nextRetry, listingRetry)
        }
        return nil
    }

    /// Sends the outbox over HTTP, one message at a time (parallel requests would not keep the order).
    private func sendOutboxOverHTTP(_ link: Link, token: String) async -> ConnectionStateMachine.PollEnding? {
        while !Task.isCancelled {
            let next = withState { $0.outbox.next(at: .now, limit: 1) }
            switch next {
            case .send(let message):
                do throws(ClientError) {
                    let ack = try await api.sendMessage(roomId: message.roomId, message.data, token: token)
                    outboxAcknowledged(message.clientId, ack.message)
                } catch {
                    if Task.isCancelled || error.code == .shutdown { return nil }
                    if error.code == .unauthorized { return .unauthorized }
                    outboxFailed(message.clientId, error: error)
                }
            case .wait(let until):
                await link.outboxBell.wait(until: until)
            case .idle:
                await link.outboxBell.wait()
            }
        }
        return nil
    }
}
