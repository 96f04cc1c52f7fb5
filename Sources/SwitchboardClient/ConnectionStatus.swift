/// Where a ``ChatClient`` stands with its server.
///
/// Watch it with ``ChatClient/statusUpdates()`` or ``ChatClient/onStatus(_:)``:
///
/// ```swift
/// for await status in client.statusUpdates() {
///     switch status {
///     case .connected: print("online")
///     case .reconnecting(let attempt, let delay): print("retry #\(attempt) in \(delay)")
///     case .failed(let reason): print("gave up: \(reason.message)")
///     default: break
///     }
/// }
/// ```
public enum ConnectionStatus: Sendable, Equatable, CustomStringConvertible {
    /// The first connection is being opened (logging in, then the WebSocket).
    case connecting
    /// The WebSocket is open: events arrive live and sends go over it.
    case connected
    /// The connection was lost or could not be opened; attempt number `attempt` starts after `nextDelay`.
    case reconnecting(attempt: Int, nextDelay: Duration)
    /// The WebSocket cannot be opened but HTTP works: events come by long polling and sends go over HTTP.
    /// The client tries the WebSocket again now and then.
    case polling
    /// The client was disconnected on purpose and does nothing more.
    case disconnected
    /// The client stopped for good, for `reason`; typically ``ClientError/Code/unauthorized``.
    case failed(ClientError)

    /// Whether events arrive live (over the WebSocket or by polling).
    public var isOnline: Bool {
        switch self {
        case .connected, .polling: true
        default: false
        }
    }

    /// Whether the client has stopped and will not connect again.
    public var isFinal: Bool {
        switch self {
        case .disconnected, .failed: true
        default: false
        }
    }

    /// The status as a person reads it, such as `reconnecting (attempt 2 in 1.5s)`.
    public var description: String {
        switch self {
        case .connecting: "connecting"
        case .connected: "connected"
        case .reconnecting(let attempt, let delay): "reconnecting (attempt \(attempt) in \(delay.formattedSeconds))"
        case .polling: "polling"
        case .disconnected: "disconnected"
        case .failed(let error): "failed (\(error.code): \(error.message))"
        }
    }
}

extension Duration {
    /// `1.25s`, for logs and statuses.
    var formattedSeconds: String {
        let milliseconds = components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
        let whole = milliseconds / 1000
        let fraction = milliseconds % 1000
        if fraction == 0 { return "\(whole)s" }
        var digits = String(fraction)
        while digits.count < 3 { digits = "0" + digits }
        while digits.hasSuffix("0") { digits.removeLast() }
        return "\(whole).\(digits)s"
    }

    /// Whole milliseconds.
    var milliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}
