import SwitchboardProtocol

/// Which users are online: the connections of each, and the moments a user comes online (their
/// first connection) or goes offline (their last), which the owner announces.
///
/// ```swift
/// var presence = PresenceTracker()
/// if let status = presence.connected(7, user: "u1") { announce(status) }   // .online
/// presence.connected(8, user: "u1")                                        // nil: already online
/// ```
struct PresenceTracker {
    private var connections: [String: Set<Int>] = [:]

    /// A connection of `user` opened: `.online` when it is their first.
    @discardableResult
    mutating func connected(_ connection: Int, user: String) -> PresenceStatus? {
        let first = connections[user] == nil
        connections[user, default: []].insert(connection)
        return first ? .online : nil
    }

    /// A connection of `user` closed: `.offline` when it was their last. A connection not
    /// known changes nothing.
    @discardableResult
    mutating func disconnected(_ connection: Int, user: String) -> PresenceStatus? {
        guard connections[user]?.remove(connection) != nil else { return nil }
        guard connections[user]?.isEmpty ?? true else { return nil }
        connections[user] = nil
        return .offline
    }

    /// The open connections of a user; empty when offline.
    func connections(of user: String) -> Set<Int> {
        connections[user] ?? []
    }

    func isOnline(_ user: String) -> Bool {
        connections[user] != nil
    }

    /// Those of `users` who are online, sorted.
    func online(among users: Set<String>) -> [String] {
        users.filter(isOnline).sorted()
    }

    /// How many users are online.
    var userCount: Int { connections.count }
}
