/// Which connections are subscribed to which rooms, and who gets each of a room's events now:
/// the fan-out's rules, without sockets.
///
/// A room's subscribers are one array, so that delivering an event to a room of 100 is a walk
/// over 100 elements updated in place (each one's `JoinPhase`), with no dictionary lookup and no
/// copy per subscriber. Generic over the frame and over where a delivery goes, so that it is
/// tested without encoding or sockets.
///
/// ```swift
/// var subscribers = RoomSubscribers<String, Int>()
/// subscribers.subscribe(7, user: "u1", target: 7, to: "r1", phase: .live(lastSeq: 0))
/// subscribers.deliver("hello", seq: 1, in: "r1")   // [7]
/// subscribers.deliver("hello", seq: 1, in: "r1")   // []: delivered already
/// ```
struct RoomSubscribers<Frame, Target> {
    private struct Subscriber {
        let connection: Int
        let user: String
        let target: Target
        var phase: JoinPhase<Frame>
    }

    private var rooms: [String: [Subscriber]] = [:]
    private var roomsByConnection: [Int: Set<String>] = [:]

    /// Subscribes a connection of `user`, reached at `target`, to a room, starting in `phase`.
    /// True when the subscription is new; one that exists only starts the new phase.
    @discardableResult
    mutating func subscribe(_ connection: Int, user: String, target: Target, to room: String, phase: JoinPhase<Frame>) -> Bool {
        guard roomsByConnection[connection, default: []].insert(room).inserted else {
            if let index = rooms[room]?.firstIndex(where: { $0.connection == connection }) {
                rooms[room]?[index].phase = phase
            }
            return false
        }
        rooms[room, default: []].append(Subscriber(connection: connection, user: user, target: target, phase: phase))
        return true
    }

    /// Ends a connection's subscription to a room. True when there was one.
    @discardableResult
    mutating func unsubscribe(_ connection: Int, from room: String) -> Bool {
        guard roomsByConnection[connection]?.remove(room) != nil else { return false }
        if roomsByConnection[connection]?.isEmpty ?? false { roomsByConnection[connection] = nil }
        if let index = rooms[room]?.firstIndex(where: { $0.connection == connection }) {
            // Order among a room's subscribers means nothing (each is a connection of its own).
            let last = rooms[room]!.count - 1
            rooms[room]?.swapAt(index, last)
            rooms[room]?.removeLast()
        }
        if rooms[room]?.isEmpty ?? false { rooms[room] = nil }
        return true
    }

    /// The rooms a connection is subscribed to (joined or joining).
    func rooms(of connection: Int) -> Set<String> {
        roomsByConnection[connection] ?? []
    }

    /// Whether a connection is subscribed to a room (joined or joining).
    func isSubscribed(_ connection: Int, to room: String) -> Bool {
        roomsByConnection[connection]?.contains(room) ?? false
    }

    /// Whether any connection is subscribed to a room.
    func hasSubscribers(_ room: String) -> Bool {
        rooms[room] != nil
    }

    /// Subscriptions in all.
    var count: Int { rooms.values.reduce(0) { $0 + $1.count } }

    /// Rooms with at least one subscriber.
    var roomCount: Int { rooms.count }

    /// An event of a room (a message when `seq` is given): where it goes now. Subscribers still
    /// joining hold it for `completeJoin`, those that had the message already (a replay) skip
    /// it, and the connections of `excludedUser` (the one typing, joining or leaving) get nothing.
    mutating func deliver(_ frame: Frame, seq: Int?, in room: String, except excludedUser: String? = nil) -> [Target] {
        guard let index = rooms.index(forKey: room) else { return [] }
        // Taken out and put back, so that the phases are updated in place without a copy.
        var subscribers: [Subscriber] = []
        swap(&subscribers, &rooms.values[index])
        defer { swap(&subscribers, &rooms.values[index]) }
        var targets: [Target] = []
        targets.reserveCapacity(subscribers.count)
        for position in subscribers.indices {
            if let excludedUser, subscribers[position].user == excludedUser { continue }
            if subscribers[position].phase.admit(frame, seq: seq) {
                targets.append(subscribers[position].target)
            }
        }
        return targets
    }

    /// A connection's join of a room is answered (its replay went out up to `lastSeq`): where
    /// its ack goes, and the events held meanwhile that the replay did not cover, to follow the
    /// ack in order. Nil when the connection is not subscribed (any more).
    mutating func completeJoin(_ connection: Int, in room: String, replayedThrough lastSeq: Int) -> (target: Target, held: [Frame])? {
        guard let index = rooms[room]?.firstIndex(where: { $0.connection == connection }),
              let held = rooms[room]?[index].phase.complete(replayedThrough: lastSeq),
              let target = rooms[room]?[index].target
        else { return nil }
        return (target, held)
    }
}
