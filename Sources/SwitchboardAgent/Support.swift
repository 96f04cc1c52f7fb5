import Foundation
import Synchronization
import SwitchboardClient
import SwitchboardProtocol

/// Fires once; every waiter, past and future, returns then.
final class Signal: Sendable {
    private struct State {
        var fired = false
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var next = 0
    }
    private let state = Mutex(State())

    var hasFired: Bool { state.withLock { $0.fired } }

    func fire() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard !state.fired else { return [] }
            state.fired = true
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns when fired or when the task is cancelled.
    func wait() async {
        let id = state.withLock { state -> Int in
            state.next += 1
            return state.next
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    if state.fired || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
    }
}

/// Exponential backoff for restarting what failed: 1 s, 2 s, 4 s … up to a minute; back to 1 s
/// after it ran a minute without failing.
struct RestartBackoff {
    var initial: Duration = .seconds(1)
    var maximum: Duration = .seconds(60)
    var stableAfter: Duration = .seconds(60)
    private(set) var failures = 0

    init(initial: Duration = .seconds(1), maximum: Duration = .seconds(60)) {
        self.initial = initial
        self.maximum = maximum
    }

    /// Records a failure after running `ranFor`, and returns how long to wait before the next start.
    mutating func failed(after ranFor: Duration) -> Duration {
        if ranFor >= stableAfter { failures = 0 }
        failures += 1
        let factor = Double(1 << min(failures - 1, 16))
        let seconds = min(Double(initial.components.seconds) + Double(initial.components.attoseconds) / 1e18, 3600) * factor
        return min(.seconds(seconds), maximum)
    }
}

/// Users by id, kept current by the events the bot sees.
final class UserDirectory: Sendable {
    private let users = Mutex<[String: User]>([:])

    func remember(_ list: [User]) {
        users.withLock { users in for user in list { users[user.id] = user } }
    }

    func cached(_ id: String) -> User? { users.withLock { $0[id] } }

    func user(id: String, client: ChatClient) async throws -> User {
        if let user = cached(id) { return user }
        let user = try await client.user(id: id)
        remember([user])
        return user
    }

    func user(named username: String, client: ChatClient) async throws -> User? {
        if let user = users.withLock({ $0.values.first { $0.username.lowercased() == username.lowercased() } }) { return user }
        let found = try await client.users(matching: username)
        remember(found)
        return found.first { $0.username.lowercased() == username.lowercased() }
    }
}

/// The rooms a bot follows, by id.
final class RoomDirectory: Sendable {
    private let rooms = Mutex<[String: Room]>([:])

    func remember(_ room: Room) { rooms.withLock { $0[room.id] = room } }
    func forget(_ id: String) { rooms.withLock { _ = $0.removeValue(forKey: id) } }
    func cached(_ id: String) -> Room? { rooms.withLock { $0[id] } }
    var all: [Room] { rooms.withLock { Array($0.values) } }

    func room(_ id: String, client: ChatClient) async throws -> Room {
        if let room = cached(id) { return room }
        return try await client.room(id)
    }

    func update(_ id: String, _ change: (inout Room) -> Void) {
        rooms.withLock { rooms in
            if var room = rooms[id] {
                change(&room)
                rooms[id] = room
            }
        }
    }
}

/// A bot's handled positions in the agent's storage, for the client's ``PositionStore``: rooms the client
/// follows by itself (every room of a bot with `rooms: all`) start where the bot left off.
struct BotPositions: PositionStore {
    let store: AgentStore
    let bot: String

    func position(in roomId: String) async throws -> Int? {
        try await store.positions(bot: bot)[roomId]
    }

    func setPosition(_ seq: Int, in roomId: String) async throws {
        try await store.setPosition(bot: bot, room: roomId, seq: seq)
    }
}

/// Work run to its end even when the caller is cancelled (a bot stopping: the event in hand is
/// handled and its position recorded, so a restart neither loses nor repeats it), unless
/// ``cancelAll()`` comes: then a handler that never ends does not keep the process from stopping.
final class UninterruptedWork: Sendable {
    private struct State {
        var cancelled = false
        var next = 0
        var running: [Int: Task<Void, Never>] = [:]
    }

    private let state = Mutex(State())

    /// Runs `work` in a task of its own, which the caller's cancellation does not reach.
    func run(_ work: @escaping @Sendable () async -> Void) async {
        let task = Task { await work() }
        let id = state.withLock { state -> Int? in
            guard !state.cancelled else { return nil }
            state.next += 1
            state.running[state.next] = task
            return state.next
        }
        if id == nil { task.cancel() }
        await task.value
        if let id { _ = state.withLock { $0.running.removeValue(forKey: id) } }
    }

    /// Cancels the work running and all work to come.
    func cancelAll() {
        let running = state.withLock { state in
            state.cancelled = true
            defer { state.running = [:] }
            return Array(state.running.values)
        }
        for task in running { task.cancel() }
    }
}
