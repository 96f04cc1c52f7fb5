import Foundation

/// Wall-clock time in the protocol's unit, for the timestamps of envelopes and stored rows.
///
/// Not a `Swift.Clock`: it tells the date, and nothing waits on it; timers take a `Clock`.
enum WallClock {
    /// Milliseconds since the Unix epoch.
    static func milliseconds() -> Int {
        Int(Date().timeIntervalSince1970 * 1000)
    }
}
