import SwitchboardProtocol

/// Why the server ends a client's session, whatever carries it: a WebSocket turns it into a
/// close frame, a long-polling session into the answer of its next poll.
///
/// The one place where a reason gets its close code, so that the chat rules never name a
/// transport's numbers.
enum SessionEnd: Sendable, Hashable {
    /// The server is shutting down.
    case shuttingDown
    /// The session's token was revoked.
    case tokenRevoked
    /// The session's token expired.
    case tokenExpired
    /// The user opened more WebSocket connections than `limit`; this, the oldest, makes room.
    case tooManyConnections(limit: Int)
    /// A newer long-polling session of the same user took this one's place.
    case replacedByNewerSession

    /// The close code a WebSocket ends with.
    var closeCode: CloseCode {
        switch self {
        case .shuttingDown: .goingAway
        case .tokenRevoked, .tokenExpired: .unauthorized
        case .tooManyConnections, .replacedByNewerSession: .policyViolation
        }
    }

    /// Why, for people: the close frame's reason, and the long poll's error message.
    var reason: String {
        switch self {
        case .shuttingDown: "server shutting down"
        case .tokenRevoked: "token revoked"
        case .tokenExpired: "token expired"
        case .tooManyConnections(let limit): "more than \(limit) connections of one user; the oldest is closed"
        case .replacedByNewerSession: "a newer polling session of the same user replaced it"
        }
    }
}
