// Pacing of outgoing lines and of reconnects: pure arithmetic on times given by the caller.

/// How fast the bridge may send to an IRC server: a burst, then one line per interval.
///
/// The default (a burst of 5, then one line a second) stays under the excess-flood limits of
/// common servers (RFC 1459's two-second penalty with a ten-second window allows the same burst).
public struct FloodControl: Sendable, Hashable, Codable {
    /// Lines that may go out at once after a quiet period. Default 5.
    public var burst: Int
    /// The time one line costs once the burst is spent. Default 1 s.
    public var interval: Duration

    /// A limit; every field has a default.
    public init(burst: Int = 5, interval: Duration = .seconds(1)) {
        self.burst = max(1, burst)
        self.interval = max(.zero, interval)
    }

    /// No pacing at all: for servers that exempt the bridge (an oper, a raised class limit).
    public static let off = FloodControl(burst: 1, interval: .zero)
}

/// A token bucket (as the generic cell rate algorithm: one "theoretical arrival time") that
/// delays lines and never drops one. Times are offsets from any fixed origin the caller picks.
///
/// ```swift
/// var bucket = TokenBucket(FloodControl(burst: 2, interval: .seconds(1)))
/// bucket.reserve(at: .zero)  // .zero: send now
/// bucket.reserve(at: .zero)  // .zero
/// bucket.reserve(at: .zero)  // 1 s: wait, then send
/// ```
public struct TokenBucket: Sendable, Hashable {
    /// The limit applied.
    public let limit: FloodControl
    private var theoreticalArrival: Duration?

    /// A full bucket.
    public init(_ limit: FloodControl) {
        self.limit = limit
    }

    /// Takes a slot for one line that wants to go at `now`; returns how long to wait before sending it.
    public mutating func reserve(at now: Duration) -> Duration {
        let arrival = theoreticalArrival ?? now
        let tolerance = limit.interval * (limit.burst - 1)
        let sendAt = max(now, arrival - tolerance)
        theoreticalArrival = max(arrival, sendAt) + limit.interval
        return sendAt - now
    }
}

/// Waits between reconnect attempts: exponential, capped, with jitter so that many bridges cut
/// off together do not all come back in the same second.
public struct ReconnectBackoff: Sendable, Hashable, Codable {
    /// The wait after the first failure. Default 1 s.
    public var initial: Duration
    /// The longest wait. Default 60 s.
    public var maximum: Duration
    /// The share of each wait that is random, from 0 to 1. Default 0.25 (±25 %).
    public var jitter: Double

    /// A backoff; every field has a default.
    public init(initial: Duration = .seconds(1), maximum: Duration = .seconds(60), jitter: Double = 0.25) {
        self.initial = initial
        self.maximum = max(initial, maximum)
        self.jitter = min(1, max(0, jitter))
    }

    /// The wait after `failures` failures in a row (1 for the first), with `random` in 0..<1.
    public func delay(afterFailures failures: Int, random: Double) -> Duration {
        guard failures > 0 else { return .zero }
        let doublings = min(failures - 1, 30)
        let base = min(maximum, initial * (1 << doublings))
        let factor = 1 - jitter + 2 * jitter * min(max(random, 0), 1)
        return min(maximum, base * factor)
    }
}
