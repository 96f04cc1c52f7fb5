import SwitchboardProtocol

/// Every caller of the client that waits for something, in one table: a send for its ack, a
/// subscribe for its join, a call for the token, a disconnect for the outbox to drain, a request for
/// its answer. One table, so that stopping (on purpose or for good) fails them all in one place.
struct Waiters: Sendable {
    /// What a caller waits for.
    enum Topic: Hashable, Sendable {
        case send(clientId: String)
        case join(roomId: String)
        case token
        case flush
        case call(ref: String)
    }

    /// A waiting caller, by the type of its answer.
    enum Continuation: Sendable {
        case message(CheckedContinuation<Message, any Error>)
        case subscription(CheckedContinuation<Room, any Error>)
        case token(CheckedContinuation<String, any Error>)
        case flush(CheckedContinuation<Void, Never>)
        case reply(CheckedContinuation<ServerEvent.Reply, any Error>)

        /// Ends the wait with `error` (a flush just ends: nothing more will drain).
        func fail(_ error: any Error) {
            switch self {
            case .message(let continuation): continuation.resume(throwing: error)
            case .subscription(let continuation): continuation.resume(throwing: error)
            case .token(let continuation): continuation.resume(throwing: error)
            case .flush(let continuation): continuation.resume()
            case .reply(let continuation): continuation.resume(throwing: error)
            }
        }
    }

    private var table: [Topic: [Int: Continuation]] = [:]
    private var nextID = 0

    /// A new id, to add a waiter with and to remove it when its caller is cancelled.
    mutating func makeID() -> Int {
        nextID += 1
        return nextID
    }

    mutating func add(_ continuation: Continuation, for topic: Topic, id: Int) {
        table[topic, default: [:]][id] = continuation
    }

    /// Removes one waiter (its caller was cancelled or timed out); `nil` when it was answered already.
    mutating func remove(_ topic: Topic, id: Int) -> Continuation? {
        let continuation = table[topic]?.removeValue(forKey: id)
        if table[topic]?.isEmpty == true { table[topic] = nil }
        return continuation
    }

    /// Whether a caller waits for `topic`.
    func isWaiting(for topic: Topic) -> Bool { table[topic] != nil }

    /// Takes every waiter of a topic, in the order they came.
    mutating func take(_ topic: Topic) -> [Continuation] {
        guard let waiting = table.removeValue(forKey: topic) else { return [] }
        return waiting.sorted { $0.key < $1.key }.map(\.value)
    }

    /// Takes every waiter of every topic that `matches`.
    mutating func take(where matches: (Topic) -> Bool) -> [Continuation] {
        table.keys.filter(matches).flatMap { take($0) }
    }

    /// Takes every waiter.
    mutating func takeAll() -> [Continuation] {
        take { _ in true }
    }

    /// Fails every waiter of `waiters` with `error`; call it outside the lock.
    static func fail(_ waiters: [Continuation], with error: any Error) {
        for waiter in waiters { waiter.fail(error) }
    }
}

/// Users and members as the client has learnt them (from join acks, events and lookups), so that a
/// bot can name the author of a message without asking the server each time.
struct Directory: Sendable {
    /// Users by id.
    var users: [String: User] = [:]
    /// Member ids by room, for the rooms the client has seen.
    var members: [String: Set<String>] = [:]
    /// Users known to be online (from join acks and presence events).
    var online: Set<String> = []

    mutating func learn(_ user: User) {
        users[user.id] = user
    }

    mutating func learn(_ room: Room) {
        members[room.id] = Set(room.members)
    }

    mutating func apply(_ change: MembershipChange) {
        learn(change.user)
        if change.change == .added {
            members[change.roomId, default: []].insert(change.user.id)
        } else if change.change == .removed {
            members[change.roomId]?.remove(change.user.id)
        }
    }
}
