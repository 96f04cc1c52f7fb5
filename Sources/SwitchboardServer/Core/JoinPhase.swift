/// Where one connection's subscription to one room stands, and the rule that keeps a join's
/// replay, its ack and the live events after it free of gaps and repeats.
///
/// While joining, the room's live events are held; when the replay is out, the ones it did not
/// cover follow the ack; from then on a message is delivered only if it is newer than the
/// newest one delivered. Generic over the frame so that it is tested without encoding.
///
/// ```swift
/// var phase = JoinPhase<OutgoingFrame>.joining()
/// phase.admit(event, seq: 8)                            // false: held
/// let after = phase.complete(replayedThrough: 7)        // [event]: send after the ack
/// ```
struct JoinPhase<Frame> {
    private enum Stage {
        /// Between the start of a join and its ack: live events wait here.
        case joining([(frame: Frame, seq: Int?)])
        /// Messages with `seq` at or below `lastSeq` were already delivered.
        case live(lastSeq: Int)
    }

    private var stage: Stage

    /// A join under way: events are held until `complete`.
    static func joining() -> JoinPhase { JoinPhase(stage: .joining([])) }

    /// Live from a room's `lastSeq` (a long-polling session, subscribed without a replay).
    static func live(lastSeq: Int) -> JoinPhase { JoinPhase(stage: .live(lastSeq: lastSeq)) }

    /// An event of the room, with its `seq` when it is a message. True when it is to be
    /// delivered now; false when it is held (joining) or was delivered already.
    mutating func admit(_ frame: Frame, seq: Int?) -> Bool {
        switch stage {
        case .live(let lastSeq):
            if let seq {
                guard seq > lastSeq else { return false }
                stage = .live(lastSeq: seq)
            }
            return true
        case .joining(var held):
            // Drop the stored copy first so that appending does not copy the array.
            stage = .live(lastSeq: 0)
            held.append((frame, seq))
            stage = .joining(held)
            return false
        }
    }

    /// The join's replay went out up to `lastSeq`, and its ack goes now: returns the held events
    /// the replay did not cover, in order, to send after the ack. Live from then on.
    mutating func complete(replayedThrough lastSeq: Int) -> [Frame] {
        var delivered = lastSeq
        var after: [Frame] = []
        if case .joining(let held) = stage {
            for event in held {
                if let seq = event.seq {
                    guard seq > delivered else { continue }
                    delivered = seq
                }
                after.append(event.frame)
            }
        }
        stage = .live(lastSeq: delivered)
        return after
    }
}
