import SwitchboardProtocol

/// One room's messages on their way to the application: every one once, in `seq` order, with no
/// gap. A pure state machine.
///
/// `seq` numbers a room's messages 1, 2, 3 … with no gap, so the machine needs to remember only
/// the last `seq` it handed over (``delivered``). A message just above it is handed over; one
/// further above waits in a buffer while the hole is filled from history over HTTP; one at or
/// below it is a repeat and is dropped. It learns of holes from the messages themselves and from
/// a `join` ack's `lastSeq` (after a reconnect, or a `truncated` replay).
///
/// ```swift
/// var timeline = RoomTimeline(after: 41)              // joined with since: 41
/// timeline.received(message42).deliver                // [message42]
/// timeline.received(message45).fetchAfter             // 42: read history after 42
/// timeline.page(after: 42, [message43, message44], hasMore: false).deliver  // [43, 44, 45]
/// ```
struct RoomTimeline: Sendable {
    /// What the driver does after an input.
    struct Output: Equatable, Sendable {
        /// Hand these to the application, in this order.
        var deliver: [Message] = []
        /// Read history after this `seq` (one page) and report it with ``page(after:_:hasMore:)``.
        var fetchAfter: Int?
        /// Messages that could not be recovered and were skipped: their `seq` range.
        var skipped: ClosedRange<Int>?
    }

    /// The last `seq` handed to the application; `nil` until the first join says where the room stands.
    private(set) var delivered: Int?
    /// The highest `seq` known to exist.
    private(set) var known: Int = 0
    /// Messages above `delivered + 1`, waiting for the hole below them to fill.
    private var buffer: [Int: Message] = [:]
    /// Whether a history page was asked for and not yet reported.
    private(set) var fetching = false

    /// A timeline that hands over messages after `seq`; `nil` starts from the live edge at the first join.
    init(after seq: Int? = nil) {
        self.delivered = seq.map { max(0, $0) }
        self.known = delivered ?? 0
    }

    /// The `since` of the next `join`.
    var since: Int? { delivered }

    /// A live or replayed message arrived.
    mutating func received(_ message: Message) -> Output {
        known = max(known, message.seq)
        guard let delivered else {
            // Before the first join ack, the start is unknown: keep it until the ack says.
            buffer[message.seq] = message
            return Output()
        }
        guard message.seq > delivered else { return Output() }
        buffer[message.seq] = message
        return advance()
    }

    /// A `join` was acknowledged (or, when polling, the room was read): `lastSeq` is the room's newest `seq`.
    mutating func joined(lastSeq: Int) -> Output {
        if delivered == nil {
            delivered = lastSeq
            buffer = buffer.filter { $0.key > lastSeq }
        }
        known = max(known, lastSeq)
        return advance()
    }

    /// A history page asked for with ``Output/fetchAfter`` (`after`) arrived.
    mutating func page(after: Int, _ messages: [Message], hasMore: Bool) -> Output {
        fetching = false
        guard let start = delivered else { return Output() }
        for message in messages where message.seq > start {
            buffer[message.seq] = message
            known = max(known, message.seq)
        }
        var output = advance()
        if after == start, let stuck = delivered, stuck == start, output.fetchAfter != nil, !hasMore {
            // The server has nothing after `start` and yet messages above it are known: they cannot be
            // recovered (deleted for good, or a server that lost them). Skip the hole rather than stall.
            fetching = false
            let resume = buffer.keys.min() ?? (known + 1)
            output.skipped = (stuck + 1)...(resume - 1)
            delivered = resume - 1
            var rest = advance()
            rest.skipped = output.skipped
            return rest
        }
        return output
    }

    /// A history page asked for could not be read; returns the fetch to try again, if one is still needed.
    mutating func pageFailed() -> Output {
        fetching = false
        return advance()
    }

    /// Hands over what is contiguous, then asks for history if a hole remains.
    private mutating func advance() -> Output {
        guard var last = delivered else { return Output() }
        var output = Output()
        buffer = buffer.filter { $0.key > last }
        while let next = buffer.removeValue(forKey: last + 1) {
            output.deliver.append(next)
            last += 1
        }
        delivered = last
        if (known > last || !buffer.isEmpty) && !fetching {
            fetching = true
            output.fetchAfter = last
        }
        return output
    }
}
