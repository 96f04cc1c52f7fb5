/// Finds a dead connection by its silence: a pure state machine.
///
/// Any frame received proves the connection alive. After `interval` of silence the monitor asks
/// for a ping; if `timeout` then passes with still nothing received, the connection is dead. The
/// driver sleeps until ``nextCheck``, calls ``check(at:)`` and does what it says; it need not wake
/// when traffic arrives, because ``nextCheck`` only ever moves later.
struct HeartbeatMonitor: Sendable {
    enum Action: Equatable, Sendable {
        /// Nothing to do yet.
        case none
        /// Send a `ping` envelope.
        case sendPing
        /// Nothing came back in time: close the connection and reconnect.
        case dead
    }

    let interval: Duration
    let timeout: Duration
    private var lastTraffic: ContinuousClock.Instant
    private var pingSentAt: ContinuousClock.Instant?

    init(interval: Duration, timeout: Duration, now: ContinuousClock.Instant) {
        self.interval = interval
        self.timeout = timeout
        self.lastTraffic = now
    }

    /// Something arrived.
    mutating func received(at now: ContinuousClock.Instant) {
        if now > lastTraffic { lastTraffic = now }
        pingSentAt = nil
    }

    /// When ``check(at:)`` has something to decide.
    var nextCheck: ContinuousClock.Instant {
        if let pingSentAt { return pingSentAt + timeout }
        return lastTraffic + interval
    }

    /// What to do at `now`.
    mutating func check(at now: ContinuousClock.Instant) -> Action {
        if let pingSentAt {
            return now >= pingSentAt + timeout ? .dead : .none
        }
        guard now >= lastTraffic + interval else { return .none }
        pingSentAt = now
        return .sendPing
    }
}
