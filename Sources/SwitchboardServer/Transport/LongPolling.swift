import Foundation
import NIOCore
import Synchronization
import SwitchboardProtocol

/// One long-polling client: a hub connection subscribed to all of its user's rooms, whose events
/// wait in a queue for the next poll.
///
/// The cursor names the session and a position in its queue; a poll drops what came before
/// its position, so an answer lost in transit is sent again by the next poll with the same cursor.
final class PollSession: EventSink {
    let id: String
    let userId: String
    private let maxBacklog: Int

    private struct State {
        var events: [ByteBuffer] = []
        /// Position of `events[0]`.
        var base = 0
        var waiter: (token: Int, continuation: CheckedContinuation<Void, Never>)?
        var nextWaiterToken = 0
        /// The polls under way, by token, and whether their time ran out (maybe before they
        /// started waiting: then they must not wait at all).
        var timedOut: [Int: Bool] = [:]
        var lastPoll = ContinuousClock.now
        var ended: String?
        var hubConnection = 0
    }

    private let state = Mutex(State())

    init(id: String, userId: String, maxBacklog: Int) {
        self.id = id
        self.userId = userId
        self.maxBacklog = maxBacklog
    }

    var hubConnection: Int {
        get { state.withLock { $0.hubConnection } }
        set { state.withLock { $0.hubConnection = newValue } }
    }

    func send(_ frame: OutgoingFrame) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard state.ended == nil else { return nil }
            state.events.append(frame.json)
            if state.events.count > maxBacklog {
                state.ended = "too many events waited for a poll"
                state.events = []
            }
            defer { state.waiter = nil }
            return state.waiter?.continuation
        }
        waiter?.resume()
    }

    /// The session's next poll answers `invalid` with the end's reason: polling again without a
    /// cursor (with a valid token) starts a new session.
    func close(_ end: SessionEnd) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.ended = state.ended ?? end.reason
            defer { state.waiter = nil }
            return state.waiter?.continuation
        }
        waiter?.resume()
    }

    /// Whether the session ended or has not been polled for `expiry`.
    func isExpired(now: ContinuousClock.Instant, expiry: Duration) -> Bool {
        state.withLock { state in
            state.ended != nil || (state.waiter == nil && now - state.lastPoll > expiry)
        }
    }

    /// Events at and after `position`, waiting up to `timeout` for the first one.
    /// - Returns: the events and the position after them.
    func poll(from position: Int, timeout: Duration) async throws -> (events: [ByteBuffer], next: Int) {
        if let ready = try take(from: position) { return ready }
        let token = state.withLock { state -> Int in
            state.nextWaiterToken += 1
            state.timedOut[state.nextWaiterToken] = false
            return state.nextWaiterToken
        }
        let timer = Task {
            try? await Task.sleep(for: timeout)
            self.wake(token)
        }
        await withCheckedContinuation { continuation in
            let resumeNow = state.withLock { state -> Bool in
                if state.timedOut[token] == true || !state.events.isEmpty || state.ended != nil { return true }
                // A newer poll replaces an older one, which answers empty.
                state.waiter?.continuation.resume()
                state.waiter = (token, continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
        timer.cancel()
        state.withLock { _ = $0.timedOut.removeValue(forKey: token) }
        return try take(from: position) ?? ([], position)
    }

    /// Ends the wait of every poll, which answers what it has (for shutdown).
    func wake() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            defer { state.waiter = nil }
            return state.waiter?.continuation
        }
        waiter?.resume()
    }

    private func wake(_ token: Int) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard state.waiter?.token == token else {
                // The timer may have beaten the poll to its wait (a short timeout): the poll
                // sees this and does not wait.
                if state.timedOut[token] != nil { state.timedOut[token] = true }
                return nil
            }
            defer { state.waiter = nil }
            return state.waiter?.continuation
        }
        waiter?.resume()
    }

    private func take(from position: Int) throws -> (events: [ByteBuffer], next: Int)? {
        try state.withLock { state in
            state.lastPoll = .now
            if let ended = state.ended {
                throw ProtocolError(.invalid, "the polling session ended (\(ended)); poll without a cursor to start a new one")
            }
            guard position >= state.base, position <= state.base + state.events.count else {
                throw ProtocolError(.invalid, "the cursor is out of range; poll without a cursor to start again")
            }
            state.events.removeFirst(position - state.base)
            state.base = position
            guard !state.events.isEmpty else { return nil }
            return (state.events, position + state.events.count)
        }
    }
}

/// The long-polling sessions of a server, by id, at most `maxPerUser` for each user.
final class PollSessions: Sendable {
    private struct State {
        var sessions: [String: PollSession] = [:]
        /// Each user's session ids, oldest first.
        var byUser: [String: [String]] = [:]
    }

    private let state = Mutex(State())
    let maxPerUser: Int

    init(maxPerUser: Int) {
        self.maxPerUser = max(1, maxPerUser)
    }

    /// Adds a session; past the user's cap, the oldest ones end and are returned.
    func add(_ session: PollSession) -> [PollSession] {
        state.withLock { state in
            state.sessions[session.id] = session
            state.byUser[session.userId, default: []].append(session.id)
            var ended: [PollSession] = []
            while let ids = state.byUser[session.userId], ids.count > maxPerUser {
                let oldest = ids[0]
                state.byUser[session.userId]?.removeFirst()
                if let removed = state.sessions.removeValue(forKey: oldest) { ended.append(removed) }
            }
            return ended
        }
    }

    /// Wakes every waiting poll, for shutdown.
    func wakeAll() {
        for session in state.withLock({ Array($0.sessions.values) }) { session.wake() }
    }

    /// The session a cursor names, with the position in it; `invalid` when the cursor cannot be read.
    func find(cursor: String, userId: String) throws -> (PollSession, Int) {
        let parts = cursor.split(separator: ".")
        guard parts.count == 2, let position = Int(parts[1]), position >= 0 else {
            throw ProtocolError(.invalid, "the cursor cannot be read; use the one the last poll returned")
        }
        guard let session = state.withLock({ $0.sessions[String(parts[0])] }), session.userId == userId else {
            throw ProtocolError(.invalid, "the cursor's session is unknown or expired; poll without a cursor to start again")
        }
        return (session, position)
    }

    /// Removes the sessions that ended or went unpolled too long, and returns them.
    func removeExpired(now: ContinuousClock.Instant, expiry: Duration) -> [PollSession] {
        state.withLock { state in
            let expired = state.sessions.values.filter { $0.isExpired(now: now, expiry: expiry) }
            for session in expired {
                state.sessions[session.id] = nil
                state.byUser[session.userId]?.removeAll { $0 == session.id }
                if state.byUser[session.userId]?.isEmpty == true { state.byUser[session.userId] = nil }
            }
            return expired
        }
    }

    /// A new random session id.
    static func newID() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        return String((0..<20).map { _ in alphabet.randomElement()! })
    }
}
