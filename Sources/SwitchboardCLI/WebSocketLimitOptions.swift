import ArgumentParser
import SwitchboardServer

/// `serve`'s limits on what one user or connection may hold or do over the WebSocket, so that no
/// client can grow the server's memory or starve the others.
struct WebSocketLimitOptions: ParsableArguments {
    @Option(help: "Messages waiting for their commit, all users together; past it new ones get rate_limited (env: SWITCHBOARD_MAX_PENDING_MESSAGES).")
    var maxPendingMessages: Int = environment("SWITCHBOARD_MAX_PENDING_MESSAGES", ServerConfiguration().maxPendingMessages)

    @Option(help: "Different reactions one message may carry (env: SWITCHBOARD_MAX_REACTIONS_PER_MESSAGE).")
    var maxReactionsPerMessage: Int = environment("SWITCHBOARD_MAX_REACTIONS_PER_MESSAGE", ServerConfiguration().maxReactionsPerMessage)

    @Option(help: "WebSocket connections one user may hold; a new one past it closes the oldest (env: SWITCHBOARD_MAX_CONNECTIONS_PER_USER).")
    var maxConnectionsPerUser: Int = environment("SWITCHBOARD_MAX_CONNECTIONS_PER_USER", ServerConfiguration().maxConnectionsPerUser)

    @Option(help: "Rooms a user may create each hour (env: SWITCHBOARD_ROOMS_PER_HOUR).")
    var roomsPerHour: Double = environment("SWITCHBOARD_ROOMS_PER_HOUR", ServerConfiguration().roomsPerHour)

    @Option(help: "Joins a user may send each second (env: SWITCHBOARD_JOINS_PER_SECOND).")
    var joinsPerSecond: Double = environment("SWITCHBOARD_JOINS_PER_SECOND", ServerConfiguration().joinsPerSecond)

    @Option(help: "Joins a user may send at once, e.g. to rejoin every room after a reconnect (env: SWITCHBOARD_JOIN_BURST).")
    var joinBurst: Double = environment("SWITCHBOARD_JOIN_BURST", ServerConfiguration().joinBurst)

    @Option(help: "Rooms kept in memory beyond those connected users follow (env: SWITCHBOARD_ROOM_CACHE_SIZE).")
    var roomCacheSize: Int = environment("SWITCHBOARD_ROOM_CACHE_SIZE", ServerConfiguration().roomCacheSize)

    func validate() throws {
        guard maxPendingMessages >= 1, maxReactionsPerMessage >= 1, maxConnectionsPerUser >= 1, roomCacheSize >= 1 else {
            throw ValidationError("--max-pending-messages, --max-reactions-per-message, --max-connections-per-user and --room-cache-size must be at least 1")
        }
        guard roomsPerHour > 0, joinsPerSecond > 0, joinBurst >= 1 else {
            throw ValidationError("--rooms-per-hour and --joins-per-second must be positive, --join-burst at least 1")
        }
    }

    func apply(to configuration: inout ServerConfiguration) {
        configuration.maxPendingMessages = maxPendingMessages
        configuration.maxReactionsPerMessage = maxReactionsPerMessage
        configuration.maxConnectionsPerUser = maxConnectionsPerUser
        configuration.roomsPerHour = roomsPerHour
        configuration.joinsPerSecond = joinsPerSecond
        configuration.joinBurst = joinBurst
        configuration.roomCacheSize = roomCacheSize
    }
}
