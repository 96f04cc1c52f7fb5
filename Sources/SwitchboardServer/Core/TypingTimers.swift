/// Who is typing in which room, and when each indicator lapses: the rule behind the automatic
/// `isTyping: false`, without the timers that wake it.
///
/// The owner (the hub) stamps events with its clock's `now` and arranges a wake-up at each
/// returned deadline; a wake-up for a deadline that was renewed or stopped since does nothing,
/// so wake-ups need not be cancelled to be correct.
///
/// ```swift
/// var timers = TypingTimers<ContinuousClock>(expiry: .seconds(6))
/// let deadline = timers.typing(key, isTyping: true, now: clock.now)   // wake at `deadline`
/// if timers.lapse(key, deadline: deadline!) { send(isTyping: false) }
/// ```
struct TypingTimers<C: Clock> {
    /// One user in one room.
    struct Key: Hashable, Sendable {
        let roomId: String
        let userId: String
    }

    /// How long an indicator lasts without being renewed.
    let expiry: C.Duration
    private var deadlines: [Key: C.Instant] = [:]

    init(expiry: C.Duration) {
        self.expiry = expiry
    }

    /// A user started or stopped typing. Returns the deadline to wake at when they started.
    mutating func typing(_ key: Key, isTyping: Bool, now: C.Instant) -> C.Instant? {
        guard isTyping else {
            deadlines[key] = nil
            return nil
        }
        let deadline = now.advanced(by: expiry)
        deadlines[key] = deadline
        return deadline
    }

    /// The wake-up for `deadline` came: true when the indicator lapsed now (it is removed, and an
    /// `isTyping: false` is due); false when it was renewed or stopped since.
    mutating func lapse(_ key: Key, deadline: C.Instant) -> Bool {
        guard deadlines[key] == deadline else { return false }
        deadlines[key] = nil
        return true
    }

    /// The users typing in a room, sorted.
    func typing(in roomId: String) -> [String] {
        deadlines.keys.filter { $0.roomId == roomId }.map(\.userId).sorted()
    }

    /// How many indicators are on.
    var count: Int { deadlines.count }
}
