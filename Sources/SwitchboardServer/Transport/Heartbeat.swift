/// When to ping a WebSocket and when to give up on it: a pure state machine.
///
/// The owner schedules `pingDue` every `interval` and, for each ping sent, `timeoutDue` after
/// `timeout`. A ping still unanswered when its timeout comes closes the connection. Any pong
/// counts, because any answer proves the peer alive.
struct Heartbeat: Sendable {
    private var pingsSent = 0
    private var unanswered: Int?

    enum Action: Equatable {
        case none
        /// Send a ping and check on it after the timeout with this number.
        case sendPing(number: Int)
        case close
    }

    /// The interval has passed.
    mutating func pingDue() -> Action {
        pingsSent += 1
        if unanswered == nil { unanswered = pingsSent }
        return .sendPing(number: pingsSent)
    }

    /// The timeout of ping `number` has passed.
    func timeoutDue(number: Int) -> Action {
        guard let unanswered, unanswered <= number else { return .none }
        return .close
    }

    /// The peer answered.
    mutating func receivedPong() {
        unanswered = nil
    }
}
