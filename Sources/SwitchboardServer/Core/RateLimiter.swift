import Synchronization

/// A token bucket: `rate` tokens a second up to `burst`, one taken per request.
///
/// A pure value: the caller passes the time, so tests need no clock.
struct TokenBucket: Sendable {
    let rate: Double
    let burst: Double
    private(set) var tokens: Double
    private var updatedAt: Duration

    init(rate: Double, burst: Double, now: Duration) {
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updatedAt = now
    }

    enum Decision: Equatable {
        case allowed
        /// Refused; a token will be there after this long.
        case limited(retryAfter: Duration)
    }

    /// Whether the bucket has refilled to `burst` by `now`: it then carries no information.
    func isFull(at now: Duration) -> Bool {
        tokens + max(0, (now - updatedAt).seconds) * rate >= burst
    }

    /// Takes a token if there is one.
    mutating func take(now: Duration) -> Decision {
        let elapsed = max(0, (now - updatedAt).seconds)
        tokens = min(burst, tokens + elapsed * rate)
        updatedAt = now
        if tokens >= 1 {
            tokens -= 1
            return .allowed
        }
        // Capped at a day, so that a tiny configured rate cannot overflow the conversion to Int.
        let wait = min((1 - tokens) / rate, 86_400)
        return .limited(retryAfter: .milliseconds(Int((wait.isFinite ? wait * 1000 : 86_400_000).rounded(.up))))
    }
}

/// Per-key token buckets for one kind of request (keys: users, addresses, usernames), shared by
/// every connection of the key.
///
/// The table holds the keys seen within about `burst / rate` seconds, and never forgets one that
/// is still refilling: once it holds more than `sweepAbove` buckets, those that have refilled (a
/// new bucket would be the same) are dropped, at most once a second.
final class RateLimiter: Sendable {
    private struct Table {
        var buckets: [String: TokenBucket] = [:]
        var sweptAt: Duration = .zero
    }

    static let sweepAbove = 10_000

    private let rate: Double
    private let burst: Double
    private let table = Mutex(Table())
    private let clock = ContinuousClock()
    private let origin = ContinuousClock.now

    init(perSecond rate: Double, burst: Double) {
        self.rate = rate
        self.burst = burst
    }

    /// Takes a token for `key`, or says how long until there is one.
    func take(_ key: String) -> TokenBucket.Decision {
        take(key, now: clock.now - origin)
    }

    /// Buckets held (for tests).
    var count: Int { table.withLock { $0.buckets.count } }

    /// ``take(_:)`` at a time since the limiter was made (for tests).
    func take(_ key: String, now: Duration) -> TokenBucket.Decision {
        table.withLock { table in
            if table.buckets.count > Self.sweepAbove, now - table.sweptAt >= .seconds(1) {
                table.sweptAt = now
                table.buckets = table.buckets.filter { !$0.value.isFull(at: now) }
            }
            var bucket = table.buckets[key] ?? TokenBucket(rate: rate, burst: burst, now: now)
            let decision = bucket.take(now: now)
            table.buckets[key] = bucket
            return decision
        }
    }
}

extension Duration {
    /// The duration in seconds, as a `Double`.
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }

    /// The duration in whole milliseconds, rounded up.
    var milliseconds: Int {
        let milliseconds = (seconds * 1000).rounded(.up)
        return milliseconds < 9e18 ? Int(milliseconds) : Int.max
    }
}
