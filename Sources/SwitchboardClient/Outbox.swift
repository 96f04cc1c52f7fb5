import Foundation
import Synchronization
import SwitchboardProtocol

/// A message in the outbox: queued, or sent and not yet acknowledged.
///
/// Its `clientId` is what makes sending it again safe: the server stores one message per user,
/// room and `clientId`, and answers a repeat with the first one.
public struct PendingMessage: Codable, Sendable, Hashable, Identifiable {
    /// The idempotency key sent with the message; also its ``id``.
    public var clientId: String
    /// The room it goes to.
    public var roomId: String
    /// Its text.
    public var content: String
    /// The message it answers.
    public var replyTo: String?
    /// Application data relayed untouched.
    public var meta: JSONValue?
    /// When it was queued, milliseconds since the Unix epoch, by this machine's clock.
    public var queuedAt: Int

    /// The ``clientId``.
    public var id: String { clientId }

    /// A pending message.
    public init(clientId: String, roomId: String, content: String, replyTo: String? = nil, meta: JSONValue? = nil, queuedAt: Int) {
        self.clientId = clientId
        self.roomId = roomId
        self.content = content
        self.replyTo = replyTo
        self.meta = meta
        self.queuedAt = queuedAt
    }

    /// The `message` data sent for it.
    var data: SendMessageData {
        SendMessageData(content: content, clientId: clientId, replyTo: replyTo, meta: meta)
    }
}

/// The order and state of the messages waiting to be sent: a pure state machine.
///
/// Messages leave in the order they were queued. At most `maxInFlight` are sent and unanswered
/// at a time; a lost connection puts them back at the head of the queue, to be sent again with the
/// same `clientId`. A `rate_limited` answer pauses the whole queue for the time the server asked
/// (so that order holds) and puts the message back; a server failure does the same, up to
/// `maxServerFailures` times; any other refusal drops the message, for the caller to report.
struct OutboxMachine: Sendable {
    /// The result of ``enqueue(_:)``.
    enum EnqueueResult: Equatable, Sendable {
        case queued
        /// The same message (same `clientId`, room and content) is already waiting; nothing changed.
        case alreadyQueued
        /// Another message with this `clientId` is waiting: the server would take one for the other.
        case clientIdInUse
        case full
    }

    /// What the sender does next.
    enum Next: Equatable, Sendable {
        /// Send this message now.
        case send(PendingMessage)
        /// Nothing may be sent before this instant (rate limited, or the server failed).
        case wait(until: ContinuousClock.Instant)
        /// Nothing to send until something changes.
        case idle
    }

    let capacity: Int
    let maxInFlight: Int
    let maxServerFailures: Int
    /// The waiting messages, oldest first.
    private(set) var entries: [PendingMessage] = []
    private var inFlight: Set<String> = []
    /// Messages written to a connection at least once (or restored from a file): the server may have stored them.
    private var sentOnce: Set<String> = []
    private var serverFailures: [String: Int] = [:]
    private var pausedUntil: ContinuousClock.Instant?

    init(capacity: Int, maxInFlight: Int, maxServerFailures: Int, restoring restored: [PendingMessage] = []) {
        self.capacity = max(1, capacity)
        self.maxInFlight = max(1, maxInFlight)
        self.maxServerFailures = max(1, maxServerFailures)
        // A restored file may hold more than a smaller capacity now allows; keep them all rather than lose any.
        var seen = Set<String>()
        self.entries = restored.filter { seen.insert($0.clientId).inserted }
        // An earlier process may have sent them.
        self.sentOnce = seen
    }

    var isEmpty: Bool { entries.isEmpty }
    var count: Int { entries.count }

    /// Whether `clientId` is waiting.
    func contains(_ clientId: String) -> Bool { entries.contains { $0.clientId == clientId } }

    /// Whether another message with the same `clientId` is waiting.
    func conflicts(with message: PendingMessage) -> Bool {
        entries.contains { $0.clientId == message.clientId && !isSame($0, message) }
    }

    private func isSame(_ queued: PendingMessage, _ message: PendingMessage) -> Bool {
        queued.roomId == message.roomId && queued.content == message.content && queued.replyTo == message.replyTo
    }

    /// Queues a message at the tail.
    mutating func enqueue(_ message: PendingMessage) -> EnqueueResult {
        if let queued = entries.first(where: { $0.clientId == message.clientId }) {
            return isSame(queued, message) ? .alreadyQueued : .clientIdInUse
        }
        guard entries.count < capacity else { return .full }
        entries.append(message)
        return .queued
    }

    /// The next message to send, if one may go now. `limit` lowers `maxInFlight` (HTTP sends one at a time).
    mutating func next(at now: ContinuousClock.Instant, limit: Int? = nil) -> Next {
        if let pausedUntil {
            if now < pausedUntil { return .wait(until: pausedUntil) }
            self.pausedUntil = nil
        }
        guard inFlight.count < min(maxInFlight, limit ?? maxInFlight) else { return .idle }
        guard let message = entries.first(where: { !inFlight.contains($0.clientId) }) else { return .idle }
        inFlight.insert(message.clientId)
        sentOnce.insert(message.clientId)
        return .send(message)
    }

    /// The server stored the message (or had stored it before: a duplicate). Removes and returns it.
    mutating func acknowledged(_ clientId: String) -> PendingMessage? {
        remove(clientId)
    }

    /// The server refused the message for good. Removes and returns it.
    mutating func refused(_ clientId: String) -> PendingMessage? {
        remove(clientId)
    }

    /// The server asked to wait: the message goes back, and the queue pauses.
    mutating func rateLimited(_ clientId: String, retryAfter: Duration, at now: ContinuousClock.Instant) {
        guard contains(clientId) else { return }
        inFlight.remove(clientId)
        pause(until: now + retryAfter)
    }

    /// The server failed on the message. It goes back and the queue pauses for `retryAfter`, unless it
    /// failed too often: then it is removed and returned, for the caller to report.
    mutating func serverFailed(_ clientId: String, retryAfter: Duration, at now: ContinuousClock.Instant) -> PendingMessage? {
        guard contains(clientId) else { return nil }
        let failures = serverFailures[clientId, default: 0] + 1
        if failures >= maxServerFailures { return remove(clientId) }
        serverFailures[clientId] = failures
        inFlight.remove(clientId)
        pause(until: now + retryAfter)
        return nil
    }

    /// The messages sent and not yet answered, oldest first.
    var inFlightIDs: [String] {
        entries.filter { inFlight.contains($0.clientId) }.map(\.clientId)
    }

    /// What ``withdraw(_:)`` did.
    enum Withdrawal: Equatable, Sendable {
        /// The message was never sent: it is removed, and will not be stored.
        case withdrawn(PendingMessage)
        /// The message was sent at least once: the server may have stored it, so it stays, to be sent
        /// again (with its `clientId`) until acknowledged.
        case mayBeStored
        /// No such message waits.
        case notQueued
    }

    /// Takes a message back if it was never sent.
    mutating func withdraw(_ clientId: String) -> Withdrawal {
        guard contains(clientId) else { return .notQueued }
        if sentOnce.contains(clientId) { return .mayBeStored }
        return remove(clientId).map(Withdrawal.withdrawn) ?? .notQueued
    }

    /// The connection ended: nothing is in flight any more; unanswered messages will be sent again.
    mutating func connectionLost() {
        inFlight.removeAll()
    }

    /// Removes and returns every message (the client stopped).
    mutating func removeAll() -> [PendingMessage] {
        defer {
            entries = []
            inFlight = []
            sentOnce = []
            serverFailures = [:]
            pausedUntil = nil
        }
        return entries
    }

    private mutating func pause(until instant: ContinuousClock.Instant) {
        if let pausedUntil, pausedUntil >= instant { return }
        pausedUntil = instant
    }

    private mutating func remove(_ clientId: String) -> PendingMessage? {
        guard let index = entries.firstIndex(where: { $0.clientId == clientId }) else { return nil }
        inFlight.remove(clientId)
        sentOnce.remove(clientId)
        serverFailures[clientId] = nil
        return entries.remove(at: index)
    }
}

/// The outbox file: a journal of JSON lines, one per queued message (`{"add": message}`) and one
/// per message that left the outbox (`{"done": clientId}`).
///
/// Why a journal: each change appends one short line, whatever the outbox holds, where rewriting
/// the whole outbox on every change would cost a burst of N messages O(N²). When dead lines
/// outnumber the live ones, the file is rewritten with the live messages only (atomically). A
/// last line cut short by a crash is ignored: it can only be the newest change. Call ``load()``
/// before changing the file: it learns what the file holds.
final class OutboxFile: Sendable {
    let path: String
    private struct State {
        /// The messages the file holds, in order, to rewrite it when it is compacted.
        var live: [PendingMessage] = []
        var lines = 0
        var handle: FileHandle?
        /// The file ends with a line cut short: the next line must start on a line of its own.
        var endsMidLine = false
    }
    private let state: Mutex<State> = Mutex(State())

    private struct Line: Codable {
        var add: PendingMessage?
        var done: String?
    }

    init(path: String) {
        self.path = path
    }

    deinit {
        state.withLock { try? $0.handle?.close() }
    }

    /// The messages the file holds; none when it does not exist.
    func load() throws(ClientError) -> [PendingMessage] {
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            var live: [PendingMessage] = []
            var lines = 0
            for line in data.split(separator: UInt8(ascii: "\n")) where !line.isEmpty {
                guard let entry = try? Wire.decode(Line.self, from: line) else { continue }
                lines += 1
                if let message = entry.add, !live.contains(where: { $0.clientId == message.clientId }) { live.append(message) }
                if let clientId = entry.done { live.removeAll { $0.clientId == clientId } }
            }
            state.withLock { state in
                state.live = live
                state.lines = lines
                state.endsMidLine = data.last.map { $0 != UInt8(ascii: "\n") } ?? false
            }
            return live
        } catch {
            throw ClientError(.storage, "cannot read the outbox file \(path)", cause: error)
        }
    }

    /// Records a message queued.
    func add(_ message: PendingMessage) throws(ClientError) {
        try append(Line(add: message)) { $0.live.append(message) }
    }

    /// Records a message that left the outbox (stored, or refused for good).
    func remove(_ clientId: String) throws(ClientError) {
        try append(Line(done: clientId)) { $0.live.removeAll { $0.clientId == clientId } }
    }

    private func append(_ line: Line, _ change: (inout State) -> Void) throws(ClientError) {
        do {
            try state.withLock { state in
                change(&state)
                if state.lines > 64 && state.lines > 2 * state.live.count {
                    try compact(&state)
                    return
                }
                var bytes = state.endsMidLine ? [UInt8(ascii: "\n")] : []
                bytes += try Wire.encode(line)
                bytes.append(UInt8(ascii: "\n"))
                try openHandle(&state).write(contentsOf: bytes)
                state.lines += 1
                state.endsMidLine = false
            }
        } catch {
            throw ClientError(.storage, "cannot write the outbox file \(path)", cause: error)
        }
    }

    /// Rewrites the file with the live messages only.
    private func compact(_ state: inout State) throws {
        try state.handle?.close()
        state.handle = nil
        var bytes: [UInt8] = []
        for message in state.live {
            bytes += try Wire.encode(Line(add: message))
            bytes.append(UInt8(ascii: "\n"))
        }
        try Data(bytes).write(to: URL(fileURLWithPath: path), options: .atomic)
        state.lines = state.live.count
        state.endsMidLine = false
    }

    private func openHandle(_ state: inout State) throws -> FileHandle {
        if let handle = state.handle { return handle }
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw ClientError(.storage, "cannot create the outbox file \(path)")
            }
        }
        let handle = try FileHandle(forWritingTo: url)
        try handle.seekToEnd()
        state.handle = handle
        return handle
    }
}
