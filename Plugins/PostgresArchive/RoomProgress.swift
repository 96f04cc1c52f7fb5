import SwitchboardProtocol

/// How far one room is archived, and what to do next: the archive's logic without I/O.
///
/// The archived `position` only moves by a commit. Live messages wait in a bounded buffer; when
/// they continue the archive without a hole they are written as they are, otherwise the hole is
/// read from the history API first. Whatever the buffer dropped, `known` remembers that the
/// server has it, so it is fetched later: nothing is lost, only read again.
struct RoomProgress: Sendable {
    /// What the writer does next for the room.
    enum Step: Equatable {
        /// Write these messages (contiguous from `position + 1`).
        case write([Message])
        /// Read the history after `after`, at most `limit` messages.
        case fetch(after: Int, limit: Int)
        /// Nothing to do until something new is known.
        case idle
    }

    /// The highest seq archived with every one before it (nil until read from the database).
    private(set) var position: Int?
    /// The highest seq the server is known to have.
    private(set) var known: Int = 0
    /// Live messages above `position`, by seq.
    private(set) var buffer: [Int: Message] = [:]
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
    }

    /// The position read from the database (0 for a room never archived).
    mutating func loaded(position: Int) {
        self.position = max(self.position ?? 0, position)
        buffer = buffer.filter { $0.key > position }
    }

    /// The server has messages up to `seq` (a room's `lastSeq`, a caught-up event).
    mutating func serverHas(upTo seq: Int) {
        known = max(known, seq)
    }

    /// A live message.
    mutating func received(_ message: Message) {
        known = max(known, message.seq)
        if let position, message.seq <= position { return }
        if buffer.count < capacity || buffer[message.seq] != nil { buffer[message.seq] = message }
    }

    /// The history API had nothing after the position: the server has nothing more (messages
    /// deleted for good), so the room is done up to there rather than asked again and again.
    /// (What the history API returns is written as it is: the server's own order, holes included.)
    mutating func foundNothing(after: Int) {
        guard let position, after == position else { return }
        known = position
    }

    /// The batch was committed: the archive has everything up to `seq`.
    mutating func archived(upTo seq: Int) {
        position = max(position ?? 0, seq)
        buffer = buffer.filter { $0.key > seq }
    }

    /// What to do next, with at most `batchSize` messages at once.
    func nextStep(batchSize: Int) -> Step {
        guard let position else { return .idle }
        var batch: [Message] = []
        var next = position + 1
        while batch.count < batchSize, let message = buffer[next] {
            batch.append(message)
            next += 1
        }
        if !batch.isEmpty { return .write(batch) }
        guard known > position else { return .idle }
        return .fetch(after: position, limit: min(batchSize, 200))
    }
}
