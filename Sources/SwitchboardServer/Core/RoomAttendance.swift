/// How many of each user's connections are subscribed to each room, and the moments the room's
/// other subscribers are told: a `join` notice at a user's first subscribed connection, a
/// `leave` notice after their last.
///
/// ```swift
/// var attendance = RoomAttendance()
/// if attendance.subscribed(user: "u1", to: "r1") { notifyJoin() }      // first connection
/// if attendance.unsubscribed(user: "u1", from: "r1") { notifyLeave() } // last one
/// ```
struct RoomAttendance {
    private var counts: [String: [String: Int]] = [:]

    /// A connection of `user` subscribed to `room`: true when it is the user's first there.
    mutating func subscribed(user: String, to room: String) -> Bool {
        counts[room, default: [:]][user, default: 0] += 1
        return counts[room]?[user] == 1
    }

    /// A connection of `user` unsubscribed from `room`: true when none of theirs is left there
    /// (also when none was counted: the notice is then due all the same).
    mutating func unsubscribed(user: String, from room: String) -> Bool {
        let remaining = (counts[room]?[user] ?? 1) - 1
        counts[room]?[user] = remaining > 0 ? remaining : nil
        if counts[room]?.isEmpty ?? false { counts[room] = nil }
        return remaining == 0
    }

    /// Drops what is counted for a room nobody follows any more.
    mutating func forget(_ room: String) {
        counts[room] = nil
    }

    /// Rooms with at least one subscribed connection counted.
    var roomCount: Int { counts.count }
}
