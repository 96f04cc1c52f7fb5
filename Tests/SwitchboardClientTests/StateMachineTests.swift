import Foundation
import SwitchboardProtocol
import Testing

@testable import SwitchboardClient

/// A generator that always gives the same number, so that jitter is predictable.
struct FixedGenerator: RandomNumberGenerator {
    var value: UInt64
    mutating func next() -> UInt64 { value }
}

private func message(_ seq: Int, room: String = "r1") -> Message {
    Message(id: "m\(seq)", roomId: room, seq: seq, userId: "u1", content: "message \(seq)", createdAt: seq)
}

private func pending(_ id: String) -> PendingMessage {
    PendingMessage(clientId: id, roomId: "r1", content: id, queuedAt: 0)
}

@Suite("Backoff and the connection state machine", .timeLimit(.minutes(1)))
struct ConnectionStateMachineTests {
    var backoff: ClientConfiguration.Backoff {
        var backoff = ClientConfiguration.Backoff()
        backoff.initialDelay = .seconds(1)
        backoff.factor = 2
        backoff.maxDelay = .seconds(10)
        backoff.jitter = 0.5
        backoff.resetAfter = .seconds(30)
        return backoff
    }

    @Test("the delay grows by the factor up to the cap, and jitter only takes away")
    func backoffDelays() {
        var noJitter = backoff
        noJitter.jitter = 0
        #expect(noJitter.delay(attempt: 1, unit: 0.9) == .seconds(1))
        #expect(noJitter.delay(attempt: 2, unit: 0.9) == .seconds(2))
        #expect(noJitter.delay(attempt: 4, unit: 0.9) == .seconds(8))
        #expect(noJitter.delay(attempt: 5, unit: 0.9) == .seconds(10))
        #expect(noJitter.delay(attempt: 50, unit: 0.9) == .seconds(10))
        #expect(backoff.delay(attempt: 3, unit: 0) == .seconds(4))
        #expect(backoff.delay(attempt: 3, unit: 0.5) == .seconds(3))
        #expect(backoff.delay(attempt: 3, unit: 0.999_999) > .seconds(2))
    }

    @Test("start, authenticate, open; a drop waits with growing backoff; a stable connection resets it")
    func reconnects() {
        var generator = FixedGenerator(value: 0)
        var machine = ConnectionStateMachine(backoff: backoff, fallback: .init())
        let t0 = ContinuousClock.now
        #expect(machine.start() == .authenticate)
        #expect(machine.status == .connecting)
        #expect(machine.authenticated(at: t0) == .connectWebSocket)
        machine.webSocketOpened(at: t0)
        #expect(machine.status == .connected)

        // Dropped after a second: not stable, so attempts keep counting.
        #expect(machine.webSocketEnded(.dropped, at: t0 + .seconds(1), using: &generator) == .wait(.seconds(1)))
        #expect(machine.status == .reconnecting(attempt: 1, nextDelay: .seconds(1)))
        #expect(machine.waitElapsed() == .connectWebSocket)
        #expect(machine.webSocketFailed(.unreachable, using: &generator) == .wait(.seconds(2)))
        #expect(machine.waitElapsed() == .connectWebSocket)
        let t1 = t0 + .seconds(10)
        machine.webSocketOpened(at: t1)
        #expect(machine.webSocketEnded(.heartbeatTimeout, at: t1 + .seconds(1), using: &generator) == .wait(.seconds(4)))
        #expect(machine.waitElapsed() == .connectWebSocket)

        // Up for a minute: the next drop starts over from the initial delay.
        let t2 = t1 + .seconds(20)
        machine.webSocketOpened(at: t2)
        #expect(machine.webSocketEnded(.dropped, at: t2 + .seconds(60), using: &generator) == .wait(.seconds(1)))
    }

    @Test("an unauthorized answer is final, wherever it comes from")
    func unauthorizedIsFinal() {
        var generator = FixedGenerator(value: 0)
        var atLogin = ConnectionStateMachine(backoff: backoff, fallback: .init())
        _ = atLogin.start()
        guard case .fail(let error) = atLogin.authenticationFailed(.unauthorized, using: &generator) else {
            Issue.record("expected a final failure")
            return
        }
        #expect(error.code == .unauthorized)
        #expect(atLogin.status == .failed(error))
        #expect(atLogin.isFinal)
        // Nothing brings it back.
        #expect(atLogin.waitElapsed() == .fail(error))

        var onClose = ConnectionStateMachine(backoff: backoff, fallback: .init())
        _ = onClose.start()
        _ = onClose.authenticated(at: .now)
        onClose.webSocketOpened(at: .now)
        guard case .fail = onClose.webSocketEnded(.unauthorized, at: .now, using: &generator) else {
            Issue.record("expected a final failure after close code 4001")
            return
        }
        #expect(onClose.stop() != .stop)
    }

    @Test("with a password, a refused token leads to a new login, once per connection; a refused password is final")
    func passwordLogsInAgain() {
        var generator = FixedGenerator(value: 0)
        var machine = ConnectionStateMachine(backoff: backoff, fallback: .init(), canLogInAgain: true)
        #expect(machine.start() == .authenticate)
        #expect(machine.authenticated(at: .now) == .connectWebSocket)
        machine.webSocketOpened(at: .now)
        // The session token expired: close code 4001.
        #expect(machine.webSocketEnded(.unauthorized, at: .now, using: &generator) == .authenticate)
        #expect(!machine.isFinal)
        #expect(machine.authenticated(at: .now) == .connectWebSocket)
        // Refused again right after a fresh login: not an expiry, so no loop.
        guard case .fail(let error) = machine.webSocketFailed(.unauthorized, using: &generator) else {
            Issue.record("expected a final failure")
            return
        }
        #expect(error.code == .unauthorized)

        var unreachable = ConnectionStateMachine(backoff: backoff, fallback: .init(), canLogInAgain: true)
        _ = unreachable.start()
        _ = unreachable.authenticated(at: .now)
        unreachable.webSocketOpened(at: .now)
        #expect(unreachable.webSocketEnded(.unauthorized, at: .now, using: &generator) == .authenticate)
        // The login cannot reach the server: after the wait, it logs in again (not the old token).
        guard case .wait = unreachable.authenticationFailed(.unreachable, using: &generator) else {
            Issue.record("expected a wait")
            return
        }
        #expect(unreachable.waitElapsed() == .authenticate)
        guard case .fail = unreachable.authenticationFailed(.unauthorized, using: &generator) else {
            Issue.record("a refused password is final")
            return
        }
    }

    @Test("WebSocket failures while HTTP works fall back to polling, which retries the WebSocket")
    func fallsBack() {
        var generator = FixedGenerator(value: 0)
        var fallback = ClientConfiguration.Fallback()
        fallback.afterFailures = 2
        var machine = ConnectionStateMachine(backoff: backoff, fallback: fallback)
        _ = machine.start()
        _ = machine.authenticated(at: .now)
        #expect(machine.webSocketFailed(.webSocketUnavailable, using: &generator) == .wait(.seconds(1)))
        #expect(machine.waitElapsed() == .connectWebSocket)
        #expect(machine.webSocketFailed(.webSocketUnavailable, using: &generator) == .startPolling)
        machine.pollingStarted()
        #expect(machine.status == .polling)
        #expect(machine.pollingEnded(.retryWebSocket, using: &generator) == .connectWebSocket)
        // Still refused: straight back to polling, no backoff.
        #expect(machine.webSocketFailed(.webSocketUnavailable, using: &generator) == .startPolling)
        machine.pollingStarted()
        #expect(machine.pollingEnded(.retryWebSocket, using: &generator) == .connectWebSocket)
        machine.webSocketOpened(at: .now)
        #expect(machine.status == .connected)
    }

    @Test("polling sessions whose polls fail keep backing off; an answered poll starts the backoff over")
    func pollingBackoff() {
        var generator = FixedGenerator(value: 0)
        var fallback = ClientConfiguration.Fallback()
        fallback.afterFailures = 1
        var machine = ConnectionStateMachine(backoff: backoff, fallback: fallback)
        _ = machine.start()
        _ = machine.authenticated(at: .now)
        #expect(machine.webSocketFailed(.webSocketUnavailable, using: &generator) == .startPolling)
        machine.pollingStarted()
        #expect(machine.pollingEnded(.failed, using: &generator) == .wait(.seconds(1)))
        #expect(machine.waitElapsed() == .connectWebSocket)
        #expect(machine.webSocketFailed(.webSocketUnavailable, using: &generator) == .startPolling)
        machine.pollingStarted()
        // A cursor alone is no success: the next failure waits longer.
        #expect(machine.pollingEnded(.failed, using: &generator) == .wait(.seconds(2)))
        #expect(machine.waitElapsed() == .connectWebSocket)
        #expect(machine.webSocketFailed(.webSocketUnavailable, using: &generator) == .startPolling)
        machine.pollingStarted()
        machine.pollAnswered()
        #expect(machine.pollingEnded(.failed, using: &generator) == .wait(.seconds(1)))
    }

    @Test("with the fallback disabled, the client keeps retrying the WebSocket")
    func noFallback() {
        var generator = FixedGenerator(value: 0)
        var fallback = ClientConfiguration.Fallback()
        fallback.enabled = false
        var machine = ConnectionStateMachine(backoff: backoff, fallback: fallback)
        _ = machine.start()
        _ = machine.authenticated(at: .now)
        for _ in 0..<5 {
            guard case .wait = machine.webSocketFailed(.webSocketUnavailable, using: &generator) else {
                Issue.record("expected a wait")
                return
            }
            #expect(machine.waitElapsed() == .connectWebSocket)
        }
    }

    @Test("maxAttempts gives up with unreachable")
    func givesUp() {
        var generator = FixedGenerator(value: 0)
        var limited = backoff
        limited.maxAttempts = 2
        var machine = ConnectionStateMachine(backoff: limited, fallback: .init())
        _ = machine.start()
        #expect(machine.authenticationFailed(.unreachable, using: &generator) == .wait(.seconds(1)))
        #expect(machine.waitElapsed() == .authenticate)
        #expect(machine.authenticationFailed(.unreachable, using: &generator) == .wait(.seconds(2)))
        #expect(machine.waitElapsed() == .authenticate)
        guard case .fail(let error) = machine.authenticationFailed(.unreachable, using: &generator) else {
            Issue.record("expected to give up")
            return
        }
        #expect(error.code == .unreachable)
    }

    @Test("stop is final and says disconnected")
    func stops() {
        var machine = ConnectionStateMachine(backoff: backoff, fallback: .init())
        _ = machine.start()
        #expect(machine.stop() == .stop)
        #expect(machine.status == .disconnected)
        #expect(machine.authenticated(at: .now) == .stop)
    }
}

@Suite("The heartbeat monitor", .timeLimit(.minutes(1)))
struct HeartbeatMonitorTests {
    @Test("silence brings a ping, an answer keeps the connection, more silence kills it")
    func heartbeat() {
        let t0 = ContinuousClock.now
        var monitor = HeartbeatMonitor(interval: .seconds(10), timeout: .seconds(5), now: t0)
        #expect(monitor.nextCheck == t0 + .seconds(10))
        #expect(monitor.check(at: t0 + .seconds(9)) == .none)
        monitor.received(at: t0 + .seconds(9))
        #expect(monitor.check(at: t0 + .seconds(10)) == .none)
        #expect(monitor.check(at: t0 + .seconds(19)) == .sendPing)
        #expect(monitor.nextCheck == t0 + .seconds(24))
        #expect(monitor.check(at: t0 + .seconds(20)) == .none)
        monitor.received(at: t0 + .seconds(21))
        #expect(monitor.check(at: t0 + .seconds(24)) == .none)
        #expect(monitor.check(at: t0 + .seconds(31)) == .sendPing)
        #expect(monitor.check(at: t0 + .seconds(36)) == .dead)
    }
}

@Suite("The outbox state machine", .timeLimit(.minutes(1)))
struct OutboxMachineTests {
    @Test("messages leave in order, one in flight, and go back at the head after a lost connection")
    func order() {
        var outbox = OutboxMachine(capacity: 10, maxInFlight: 1, maxServerFailures: 3)
        for id in ["a", "b", "c"] { #expect(outbox.enqueue(pending(id)) == .queued) }
        #expect(outbox.enqueue(pending("a")) == .alreadyQueued)
        let now = ContinuousClock.now
        #expect(outbox.next(at: now) == .send(pending("a")))
        #expect(outbox.next(at: now) == .idle)
        outbox.connectionLost()
        #expect(outbox.next(at: now) == .send(pending("a")))
        #expect(outbox.acknowledged("a") == pending("a"))
        #expect(outbox.acknowledged("a") == nil)
        #expect(outbox.next(at: now) == .send(pending("b")))
        #expect(outbox.acknowledged("b") != nil)
        #expect(outbox.next(at: now) == .send(pending("c")))
        #expect(outbox.acknowledged("c") != nil)
        #expect(outbox.isEmpty)
        #expect(outbox.next(at: now) == .idle)
    }

    @Test("a message never sent can be withdrawn; one sent once may be stored, and stays")
    func withdraw() {
        var outbox = OutboxMachine(capacity: 10, maxInFlight: 1, maxServerFailures: 3)
        for id in ["a", "b"] { #expect(outbox.enqueue(pending(id)) == .queued) }
        #expect(outbox.next(at: .now) == .send(pending("a")))
        outbox.connectionLost()
        #expect(outbox.withdraw("a") == .mayBeStored)
        #expect(outbox.withdraw("b") == .withdrawn(pending("b")))
        #expect(outbox.withdraw("b") == .notQueued)
        #expect(outbox.entries == [pending("a")])
        #expect(outbox.inFlightIDs.isEmpty)
        #expect(outbox.next(at: .now) == .send(pending("a")))
        #expect(outbox.inFlightIDs == ["a"])
        let restored = OutboxMachine(capacity: 10, maxInFlight: 1, maxServerFailures: 3, restoring: [pending("c")])
        var copy = restored
        #expect(copy.withdraw("c") == .mayBeStored)
    }

    @Test("a rate-limited message pauses the queue and is sent first afterwards")
    func rateLimited() {
        var outbox = OutboxMachine(capacity: 10, maxInFlight: 2, maxServerFailures: 3)
        _ = outbox.enqueue(pending("a"))
        _ = outbox.enqueue(pending("b"))
        let now = ContinuousClock.now
        #expect(outbox.next(at: now) == .send(pending("a")))
        #expect(outbox.next(at: now) == .send(pending("b")))
        outbox.rateLimited("a", retryAfter: .milliseconds(300), at: now)
        #expect(outbox.next(at: now + .milliseconds(100)) == .wait(until: now + .milliseconds(300)))
        #expect(outbox.next(at: now + .milliseconds(300)) == .send(pending("a")))
        #expect(outbox.next(at: now + .milliseconds(300)) == .idle)
    }

    @Test("the capacity bounds the queue; a refusal drops; repeated server failures give up")
    func boundsAndFailures() {
        var outbox = OutboxMachine(capacity: 2, maxInFlight: 1, maxServerFailures: 2)
        #expect(outbox.enqueue(pending("a")) == .queued)
        #expect(outbox.enqueue(pending("b")) == .queued)
        #expect(outbox.enqueue(pending("c")) == .full)
        let now = ContinuousClock.now
        #expect(outbox.next(at: now) == .send(pending("a")))
        #expect(outbox.refused("a") == pending("a"))
        #expect(outbox.next(at: now) == .send(pending("b")))
        #expect(outbox.serverFailed("b", retryAfter: .seconds(1), at: now) == nil)
        #expect(outbox.next(at: now + .seconds(1)) == .send(pending("b")))
        #expect(outbox.serverFailed("b", retryAfter: .seconds(1), at: now) == pending("b"))
        #expect(outbox.isEmpty)
    }

    @Test("HTTP sends one at a time even when more may be in flight")
    func limit() {
        var outbox = OutboxMachine(capacity: 10, maxInFlight: 4, maxServerFailures: 3)
        _ = outbox.enqueue(pending("a"))
        _ = outbox.enqueue(pending("b"))
        #expect(outbox.next(at: .now, limit: 1) == .send(pending("a")))
        #expect(outbox.next(at: .now, limit: 1) == .idle)
    }

    @Test("the outbox file keeps messages across instances")
    func file() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("outbox-\(UUID().uuidString)/outbox.json").path
        let file = OutboxFile(path: path)
        #expect(try file.load().isEmpty)
        try file.add(pending("a"))
        try file.add(pending("b"))
        try file.add(pending("c"))
        try file.remove("b")
        #expect(try OutboxFile(path: path).load() == [pending("a"), pending("c")])
        let restored = OutboxMachine(capacity: 2, maxInFlight: 1, maxServerFailures: 1, restoring: try file.load())
        #expect(restored.entries.map(\.clientId) == ["a", "c"])

        // A line cut short by a crash is the newest change, and is ignored.
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.seekToEnd()
        try handle.write(contentsOf: Array(#"{"add":{"clientId":"d","#.utf8))
        try handle.close()
        let reopened = OutboxFile(path: path)
        #expect(try reopened.load().map(\.clientId) == ["a", "c"])
        try reopened.add(pending("e"))
        #expect(try OutboxFile(path: path).load().map(\.clientId) == ["a", "c", "e"])
    }

    @Test("the outbox file stays small: dead lines are compacted away")
    func outboxFileCompaction() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("outbox-\(UUID().uuidString).jsonl").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let file = OutboxFile(path: path)
        _ = try file.load()
        try file.add(pending("kept"))
        for index in 0..<500 {
            try file.add(pending("m\(index)"))
            try file.remove("m\(index)")
        }
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.count <= 130, "\(lines.count) lines for one live message")
        #expect(try OutboxFile(path: path).load().map(\.clientId) == ["kept"])
    }
}

@Suite("The room timeline", .timeLimit(.minutes(1)))
struct RoomTimelineTests {
    @Test("contiguous messages pass, repeats are dropped")
    func contiguous() {
        var timeline = RoomTimeline(after: 3)
        #expect(timeline.received(message(4)).deliver == [message(4)])
        #expect(timeline.received(message(4)).deliver.isEmpty)
        #expect(timeline.received(message(2)).deliver.isEmpty)
        #expect(timeline.received(message(5)).deliver == [message(5)])
        #expect(timeline.delivered == 5)
        #expect(timeline.joined(lastSeq: 5) == RoomTimeline.Output())
    }

    @Test("a live start waits for the join ack, and keeps only what is above it")
    func liveStart() {
        var timeline = RoomTimeline()
        #expect(timeline.received(message(10)).deliver.isEmpty)
        #expect(timeline.received(message(11)).deliver.isEmpty)
        let output = timeline.joined(lastSeq: 10)
        #expect(output.deliver == [message(11)])
        #expect(output.fetchAfter == nil)
    }

    @Test("a truncated join pages history while live messages wait, then hands over all in order")
    func truncated() {
        var timeline = RoomTimeline(after: 2)
        let joined = timeline.joined(lastSeq: 400)
        #expect(joined.deliver.isEmpty)
        #expect(joined.fetchAfter == 2)
        // Live messages during the paging wait.
        #expect(timeline.received(message(401)) == RoomTimeline.Output())
        let first = timeline.page(after: 2, (3...202).map { message($0) }, hasMore: true)
        #expect(first.deliver.map(\.seq) == Array(3...202))
        #expect(first.fetchAfter == 202)
        let second = timeline.page(after: 202, (203...400).map { message($0) }, hasMore: true)
        #expect(second.deliver.map(\.seq) == Array(203...401))
        #expect(second.fetchAfter == nil)
        #expect(timeline.delivered == 401)
    }

    @Test("a hole in live messages is filled from history")
    func hole() {
        var timeline = RoomTimeline(after: 0)
        #expect(timeline.received(message(1)).deliver == [message(1)])
        let jump = timeline.received(message(4))
        #expect(jump.deliver.isEmpty)
        #expect(jump.fetchAfter == 1)
        // A second hole while fetching asks nothing more.
        #expect(timeline.received(message(6)).fetchAfter == nil)
        let page = timeline.page(after: 1, [message(2), message(3), message(4), message(5), message(6)], hasMore: false)
        #expect(page.deliver.map(\.seq) == [2, 3, 4, 5, 6])
        #expect(page.fetchAfter == nil)
    }

    @Test("a failed page is asked for again; a stale page does not skip anything")
    func failedAndStale() {
        var timeline = RoomTimeline(after: 0)
        #expect(timeline.joined(lastSeq: 3).fetchAfter == 0)
        #expect(timeline.pageFailed().fetchAfter == 0)
        // A replay filled the hole meanwhile; a late, empty answer for an older position changes nothing.
        _ = timeline.received(message(1))
        _ = timeline.received(message(2))
        let stale = timeline.page(after: 0, [], hasMore: false)
        #expect(stale.skipped == nil)
        #expect(stale.fetchAfter == 2)
        #expect(timeline.page(after: 2, [message(3)], hasMore: false).deliver == [message(3)])
    }

    @Test("messages the server no longer has are skipped, not waited for forever")
    func unrecoverable() {
        var timeline = RoomTimeline(after: 0)
        _ = timeline.received(message(1))
        #expect(timeline.received(message(4)).fetchAfter == 1)
        let output = timeline.page(after: 1, [], hasMore: false)
        #expect(output.skipped == 2...3)
        #expect(output.deliver == [message(4)])
        #expect(timeline.delivered == 4)
    }
}
