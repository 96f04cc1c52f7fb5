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
        let user = try await ClientAdapter.user(id: id, client: client)
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

/// What the agent needs from the client library and it does not offer yet, in one place, so that
/// each piece is replaced by the library's own when it lands.
enum ClientAdapter {
    /// A user by id.
    static func user(id: String, client: ChatClient) async throws -> User {
        // Until `GET /api/users/{id}` (protocol 1.1) is in the client: the user search, which
        // matches every user for an empty query (at most 50).
        if let user = try await client.users(matching: "").first(where: { $0.id == id }) { return user }
        throw ClientError(.notFound, "no user \(id)")
    }

    /// A public room by name (without regard to case).
    static func publicRoom(named name: String, client: ChatClient) async throws -> Room? {
        // Until `GET /api/rooms/public` (protocol 1.1) is in the client: only the bot's own rooms.
        try await client.rooms().map(\.room).first { $0.isPublic && $0.name.lowercased() == name.lowercased() }
    }

    /// A `member` event (protocol 1.1), when the client hands it over as an unknown envelope.
    static func memberChange(_ envelope: Envelope<JSONValue>) -> (change: MemberChange, added: Bool)? {
        guard envelope.type == "member", let roomId = envelope.roomId, let data = envelope.data,
              let bytes = try? Wire.encode(data), let member = try? Wire.decode(MemberData.self, from: bytes)
        else { return nil }
        return (MemberChange(roomId: roomId, user: member.user, by: member.by), member.change == "added")
    }

    struct MemberData: Decodable {
        var user: User
        var change: String
        var by: String?
    }
}
