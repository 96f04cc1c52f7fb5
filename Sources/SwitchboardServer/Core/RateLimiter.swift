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

/// Per-user token buckets for one kind of request, shared by every connection of the user.
final class RateLimiter: Sendable {
    private let rate: Double
    private let burst: Double
    private let buckets = Mutex<[String: TokenBucket]>([:])
    private let clock = ContinuousClock()
    private let origin = ContinuousClock.now

    init(perSecond rate: Double, burst: Double) {
        self.rate = rate
        self.burst = burst
    }

    /// Takes a token for `userId`, or says how long until there is one.
    func take(_ userId: String) -> TokenBucket.Decision {
        let now = clock.now - origin
        return buckets.withLock { buckets in
            var bucket = buckets[userId] ?? TokenBucket(rate: rate, burst: burst, now: now)
            let decision = bucket.take(now: now)
            // A full bucket carries no information: forget it so the table holds only active users.
            if bucket.tokens >= burst - 1, case .allowed = decision, buckets.count > 10_000 {
                buckets[userId] = nil
            } else {
                buckets[userId] = bucket
            }
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
