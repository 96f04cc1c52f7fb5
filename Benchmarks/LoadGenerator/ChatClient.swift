import NIOCore
import SwitchboardProtocol

/// What one connection of a run does: who it is, which room it joins, whether and how it sends.
struct ClientPlan: Sendable {
    /// The client's number in the run; a sender's messages carry it.
    var index: Int
    var account: Account
    /// The room it joins (and sends to, if it sends).
    var roomId: String?
    /// `index % roomCount`: rooms are filled round-robin.
    var roomIndex: Int = 0
    var roomCount: Int = 1
    /// Subscribers of its room: the deliveries each of its acked messages should make.
    var audience: Int = 1
    /// Senders in its room: client `roomIndex + k * roomCount` for `k < roomSenders`.
    var roomSenders: Int = 0
    /// Whether this client sends.
    var sends: Bool = false
    /// Whether it reconnects and rejoins (with `since`) after losing its connection.
    var reconnects: Bool = false
}

/// How senders send.
struct SendPlan: Sendable {
    /// Messages a second for this sender; 0 sends as fast as acks allow, `window` at a time.
    var rate: Double = 0
    /// Messages in flight in closed-loop mode.
    var window: Int = 1
    /// Most unacked messages in open-loop mode, after which sending waits (latency, measured
    /// from the intended send time, then shows the server falling behind).
    var maxInFlight: Int = 1024
    /// Bytes of `content`.
    var size: Int = 100
    /// Whether each message carries a `clientId` (as real clients do, to resend safely).
    var clientIds: Bool = true
    /// Distinguishes this run's `clientId`s from earlier runs against the same database.
    var runTag: String = "b"
    /// Spreads the senders' open-loop schedules evenly: this sender's offset, 0 to 1 of an interval.
    var phase: Double = 0
}

/// What a join answered.
struct JoinOutcome: Sendable {
    var lastSeq: Int
    var replayed: Int
    var truncated: Bool
    /// Messages received between sending the join and its ack.
    var replayReceived: Int
    /// From sending the join to its ack, in nanoseconds.
    var nanoseconds: UInt64
    /// Replayed messages whose `seq` did not follow the one before.
    var outOfOrder: Int
}

/// One connection of a run, on its worker's event loop.
///
/// Senders put `SENDER.NUMBER.SENT_AT_NANOSECONDS.` at the start of each message's content, so that
/// every receiver computes the latency and notes the message in a bit set per sender: a second
/// copy is a duplicate, and at the end an acked message missing from a member's set is lost.
final class ChatClient: SocketDelegate {
    let plan: ClientPlan
    let stats: LoopStats
    let eventLoop: any EventLoop
    private(set) var socket: BenchSocket?
    private var endpoint: WebSocketEndpoint?
    private var stopped = false

    // Receiving
    /// Message numbers received from each sender of the room, by the sender's rank in the room.
    private(set) var received: [BitSet]
    private(set) var lastSeq = 0

    // Joining
    private var joinPromise: EventLoopPromise<JoinOutcome>?
    private var joinSentAt: UInt64 = 0
    private var joinReplayReceived = 0
    private var joinOutOfOrder = 0
    private var joining = false
    private(set) var joined = false

    // Sending
    private var send = SendPlan()
    private(set) var acked = BitSet()
    private var nextNumber = 0
    private var inFlight = 0
    private var sentAt: [UInt64] = []
    private var running = false
    private var startAt: UInt64 = 0
    private var stopAt: UInt64 = 0
    private var interval: Double = 0
    private var waitingForAck = false
    private var pausedUntil: UInt64 = 0
    private var head: [UInt8] = []
    private var middle: [UInt8] = []
    private var clientIdHead: [UInt8] = []
    private var estimatedSize = 0

    // Reconnecting
    private var reconnectDelay: TimeAmount = .milliseconds(100)
    private var disconnectedAt: UInt64 = 0

    init(plan: ClientPlan, worker: Worker) {
        self.plan = plan
        self.stats = worker.stats
        self.eventLoop = worker.eventLoop
        self.received = Array(repeating: BitSet(), count: plan.roomSenders)
    }

    // MARK: Connecting

    /// Opens the connection; the future is the upgrade's latency in nanoseconds.
    func connect(to endpoint: WebSocketEndpoint, timeout: TimeAmount = .seconds(30)) -> EventLoopFuture<UInt64> {
        self.endpoint = endpoint
        stopped = false
        let (socket, upgraded) = BenchSocket.connect(to: endpoint, token: plan.account.token, on: eventLoop, delegate: self, timeout: timeout)
        self.socket = socket
        return upgraded
    }

    func socketDidOpen(_ socket: BenchSocket) {
        guard plan.reconnects, disconnectedAt != 0, plan.roomId != nil else { return }
        // A reconnect: rejoin with what was seen, then count the recovery.
        let started = disconnectedAt
        join(since: lastSeq).assumeIsolated().whenComplete { [self] result in
            switch result {
            case .success:
                let now = MonotonicClock.nanoseconds()
                stats.counts.rejoins += 1
                stats.counts.lastRejoinAt = max(stats.counts.lastRejoinAt, now)
                stats.rejoinTimes.recordNanoseconds(now &- started)
                disconnectedAt = 0
            case .failure(let error):
                stats.countError("rejoin: \(error)")
            }
        }
    }

    func socketDidClose(_ socket: BenchSocket, code: Int?) {
        guard socket === self.socket else { return }
        joined = false
        if let promise = joinPromise {
            joinPromise = nil
            joining = false
            promise.fail(BenchError("connection closed before the join was acked"))
        }
        if inFlight > 0 {
            stats.counts.inFlight -= inFlight
            inFlight = 0
        }
        guard !stopped else { return }
        if socket.didOpen {
            stats.counts.unexpectedCloses += 1
            stats.counts.closeCodes[code ?? 1006, default: 0] += 1
        }
        if plan.reconnects {
            if disconnectedAt == 0 { disconnectedAt = MonotonicClock.nanoseconds() }
            // Every failed attempt ends here too (refused, refused upgrade, timeout): one chain of retries.
            scheduleReconnect()
        }
    }

    private func scheduleReconnect() {
        guard !stopped, let endpoint else { return }
        // Full jitter around the delay, so that a thousand clients do not knock at once.
        let base = reconnectDelay.nanoseconds
        let delay = TimeAmount.nanoseconds(base / 2 + Int64.random(in: 0...max(1, base)))
        eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
            guard !stopped else { return }
            stats.counts.reconnectAttempts += 1
            _ = connect(to: endpoint, timeout: .seconds(5))
        }
    }

    /// Sets how long to wait between reconnect attempts.
    func setReconnectDelay(_ delay: TimeAmount) {
        reconnectDelay = delay
    }

    /// Stops sending and reconnecting; with `closing`, closes the connection with a close frame.
    func stop(closing: Bool) {
        stopped = true
        running = false
        if closing { socket?.close() }
    }

    /// Ends the connection without a close frame.
    func abort() {
        stopped = true
        running = false
        socket?.abort()
    }

    // MARK: Joining

    /// Sends `join` for the plan's room; the future completes with its ack.
    func join(since: Int? = nil) -> EventLoopFuture<JoinOutcome> {
        let promise = eventLoop.makePromise(of: JoinOutcome.self)
        guard let socket, let roomId = plan.roomId, !joining else {
            promise.fail(BenchError("cannot join: not connected"))
            return promise.futureResult
        }
        joining = true
        joinPromise = promise
        joinReplayReceived = 0
        joinOutOfOrder = 0
        joinSentAt = MonotonicClock.nanoseconds()
        var text = "{\"type\":\"join\",\"roomId\":\(Self.jsonString(roomId)),\"ref\":\"j\""
        if let since { text += ",\"data\":{\"since\":\(since)}" }
        text += "}"
        socket.sendText(estimatedSize: text.utf8.count) { $0.writeString(text) }
        return promise.futureResult
    }

    /// Sends `leave` for the plan's room (its ack is not awaited).
    func leave() {
        guard let socket, let roomId = plan.roomId else { return }
        joined = false
        let text = "{\"type\":\"leave\",\"roomId\":\(Self.jsonString(roomId)),\"ref\":\"l\"}"
        socket.sendText(estimatedSize: text.utf8.count) { $0.writeString(text) }
    }

    static func jsonString(_ value: String) -> String {
        (try? Wire.encodeString(value)) ?? "\"\(value)\""
    }

    // MARK: Sending

    /// Starts sending at `start` (monotonic nanoseconds) and stops sending at `stop`.
    func startSending(_ send: SendPlan, start: UInt64, stop: UInt64) {
        guard plan.sends, let roomId = plan.roomId else { return }
        self.send = send
        let room = Self.jsonString(roomId)
        head = Array("{\"type\":\"message\",\"roomId\":\(room),\"ref\":\"".utf8)
        middle = Array("\",\"data\":{\"content\":\"\(plan.index).".utf8)
        clientIdHead = send.clientIds ? Array("\",\"clientId\":\"\(send.runTag)-\(plan.index)-".utf8) : []
        estimatedSize = head.count + middle.count + clientIdHead.count + max(send.size, 40) + 40
        let capacity = max(send.rate > 0 ? send.maxInFlight : send.window, 1)
        var ring = 1
        while ring < capacity { ring <<= 1 }
        sentAt = Array(repeating: 0, count: ring)
        startAt = start
        stopAt = stop
        running = true
        if send.rate > 0 {
            interval = 1e9 / send.rate
            scheduleOpenLoop()
        } else {
            eventLoop.assumeIsolated().scheduleTask(deadline: .uptimeNanoseconds(start)) { [self] in
                fillWindow()
            }
        }
    }

    /// The intended send time of message `number` in open-loop mode.
    @inline(__always)
    private func intendedTime(_ number: Int) -> UInt64 {
        startAt + UInt64((Double(number) + send.phase) * interval)
    }

    private func scheduleOpenLoop() {
        guard running else { return }
        let next = intendedTime(nextNumber)
        guard next < stopAt else {
            running = false
            return
        }
        eventLoop.assumeIsolated().scheduleTask(deadline: .uptimeNanoseconds(next)) { [self] in
            openLoopTick()
        }
    }

    private func openLoopTick() {
        guard running else { return }
        let now = MonotonicClock.nanoseconds()
        while running, inFlight < sentAt.count, inFlight < send.maxInFlight {
            let intended = intendedTime(nextNumber)
            if intended >= stopAt {
                running = false
                return
            }
            guard intended <= now else { break }
            guard sendMessage(timestamp: intended) else { return }
        }
        if inFlight >= send.maxInFlight || inFlight >= sentAt.count {
            waitingForAck = true
        } else {
            scheduleOpenLoop()
        }
    }

    private func fillWindow() {
        guard running else { return }
        var now = MonotonicClock.nanoseconds()
        if now < pausedUntil { return }
        while running, inFlight < send.window {
            if now >= stopAt {
                running = false
                return
            }
            guard sendMessage(timestamp: now) else { return }
            now = MonotonicClock.nanoseconds()
        }
    }

    /// Sends the next message, stamped with `timestamp`.
    @discardableResult
    private func sendMessage(timestamp: UInt64) -> Bool {
        guard let socket else { return false }
        let number = nextNumber
        let head = self.head, middle = self.middle, clientIdHead = self.clientIdHead
        let size = send.size
        let ok = socket.sendText(estimatedSize: estimatedSize) { buffer in
            buffer.writeBytes(head)
            buffer.writeDecimal(UInt64(number))
            buffer.writeBytes(middle)
            let contentStart = buffer.writerIndex - middle.count + 21  // after `","data":{"content":"`
            buffer.writeDecimal(UInt64(number))
            buffer.writeInteger(UInt8(ascii: "."))
            buffer.writeDecimal(timestamp)
            buffer.writeInteger(UInt8(ascii: "."))
            let padding = size - (buffer.writerIndex - contentStart)
            if padding > 0 { buffer.writeRepeatingByte(UInt8(ascii: "x"), count: padding) }
            if !clientIdHead.isEmpty {
                buffer.writeBytes(clientIdHead)
                buffer.writeDecimal(UInt64(number))
            }
            buffer.writeStaticString("\"}}")
        }
        guard ok else { return false }
        sentAt[number & (sentAt.count - 1)] = timestamp
        nextNumber += 1
        inFlight += 1
        stats.counts.inFlight += 1
        stats.counts.sent += 1
        return true
    }

    private func messageAnswered(number: Int, success: Bool, retryAfterMs: Int?) {
        guard number < nextNumber, inFlight > 0 else { return }
        inFlight -= 1
        stats.counts.inFlight -= 1
        let now = MonotonicClock.nanoseconds()
        let sent = sentAt[number & (sentAt.count - 1)]
        if success {
            guard acked.insert(number) else { return }
            stats.counts.acked += 1
            stats.counts.expectedDeliveries += plan.audience
            if stats.inWindow(sent) {
                stats.counts.ackedInWindow += 1
                stats.ackLatency.recordNanoseconds(now &- sent)
                stats.intervalAckLatency.recordNanoseconds(now &- sent)
            }
        } else {
            stats.counts.failed += 1
            if let retryAfterMs, retryAfterMs > 0 {
                pausedUntil = now + UInt64(retryAfterMs) * 1_000_000
                if send.rate == 0 {
                    eventLoop.assumeIsolated().scheduleTask(deadline: .uptimeNanoseconds(pausedUntil)) { [self] in
                        fillWindow()
                    }
                    return
                }
            }
        }
        guard running else { return }
        if send.rate == 0 {
            fillWindow()
        } else if waitingForAck {
            waitingForAck = false
            openLoopTick()
        }
    }

    // MARK: Receiving

    func socket(_ socket: BenchSocket, didReceive text: ByteBuffer) {
        text.withUnsafeReadableBytes { bytes in
            guard let envelope = JSONScan.envelope(bytes) else {
                stats.counts.malformedFrames += 1
                return
            }
            if JSONScan.stringEquals(bytes, envelope.type, "message") {
                receivedMessage(bytes, envelope)
            } else if JSONScan.stringEquals(bytes, envelope.type, "ack") {
                receivedAck(bytes, envelope)
            } else if JSONScan.stringEquals(bytes, envelope.type, "error") {
                receivedError(bytes, envelope)
            } else {
                stats.counts.otherFrames += 1
            }
        }
    }

    private func receivedMessage(_ bytes: UnsafeRawBufferPointer, _ envelope: EnvelopeFields) {
        let now = MonotonicClock.nanoseconds()
        guard let dataSpan = envelope.data else {
            stats.counts.malformedFrames += 1
            return
        }
        let data = JSONScan.data(bytes, dataSpan)
        if let seq = JSONScan.integer(bytes, data.seq) {
            if joining {
                joinReplayReceived += 1
                if seq != lastSeq + 1 { joinOutOfOrder += 1 }
            }
            if seq > lastSeq { lastSeq = seq }
        }
        guard let marker = Self.marker(bytes, data.content) else {
            stats.counts.foreignMessages += 1
            return
        }
        stats.counts.deliveries += 1
        if stats.inWindow(now) { stats.counts.deliveriesInWindow += 1 }
        let rank = marker.sender / max(plan.roomCount, 1)
        guard marker.sender % max(plan.roomCount, 1) == plan.roomIndex, rank < received.count else {
            stats.counts.foreignMessages += 1
            return
        }
        if !received[rank].insert(marker.number) {
            stats.counts.duplicates += 1
            return
        }
        if stats.inWindow(marker.sentAt) {
            let latency = now &- marker.sentAt
            stats.latency.recordNanoseconds(latency)
            stats.intervalLatency.recordNanoseconds(latency)
        }
    }

    /// Reads `"SENDER.NUMBER.SENT_AT.` at the start of a content string value.
    @inline(__always)
    static func marker(_ bytes: UnsafeRawBufferPointer, _ span: Span?) -> (sender: Int, number: Int, sentAt: UInt64)? {
        guard let span, span.count > 6, bytes[span.start] == UInt8(ascii: "\"") else { return nil }
        var index = span.start + 1
        var values: (UInt64, UInt64, UInt64) = (0, 0, 0)
        for field in 0..<3 {
            var value: UInt64 = 0
            let first = index
            while index < span.end {
                let digit = bytes[index] &- 48
                guard digit <= 9 else { break }
                value = value &* 10 &+ UInt64(digit)
                index += 1
            }
            guard index > first, index < span.end, bytes[index] == UInt8(ascii: ".") else { return nil }
            index += 1
            switch field {
            case 0: values.0 = value
            case 1: values.1 = value
            default: values.2 = value
            }
        }
        return (Int(values.0), Int(values.1), values.2)
    }

    private func receivedAck(_ bytes: UnsafeRawBufferPointer, _ envelope: EnvelopeFields) {
        guard let ref = envelope.ref, ref.count >= 3 else {
            stats.counts.otherFrames += 1
            return
        }
        let first = bytes[ref.start + 1]
        if first == UInt8(ascii: "j") {
            guard let promise = joinPromise, let dataSpan = envelope.data else { return }
            let data = JSONScan.data(bytes, dataSpan)
            let ackLastSeq = JSONScan.integer(bytes, data.lastSeq) ?? lastSeq
            lastSeq = max(lastSeq, ackLastSeq)
            joinPromise = nil
            joining = false
            joined = true
            promise.succeed(JoinOutcome(
                lastSeq: ackLastSeq, replayed: JSONScan.integer(bytes, data.replayed) ?? 0,
                truncated: JSONScan.isTrue(bytes, data.truncated), replayReceived: joinReplayReceived,
                nanoseconds: MonotonicClock.nanoseconds() &- joinSentAt, outOfOrder: joinOutOfOrder))
        } else if first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9") {
            guard let number = JSONScan.integer(bytes, ref) else { return }
            messageAnswered(number: number, success: true, retryAfterMs: nil)
        }
    }

    private func receivedError(_ bytes: UnsafeRawBufferPointer, _ envelope: EnvelopeFields) {
        var code = "unknown"
        var retryAfterMs: Int?
        if let dataSpan = envelope.data {
            let data = JSONScan.data(bytes, dataSpan)
            code = JSONScan.string(bytes, data.code) ?? code
            retryAfterMs = JSONScan.integer(bytes, data.retryAfterMs)
        }
        stats.countError(code)
        guard let ref = envelope.ref, ref.count >= 3 else { return }
        let first = bytes[ref.start + 1]
        if first == UInt8(ascii: "j") {
            guard let promise = joinPromise else { return }
            joinPromise = nil
            joining = false
            promise.fail(BenchError("join refused: \(code)"))
        } else if first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9"), let number = JSONScan.integer(bytes, ref) {
            messageAnswered(number: number, success: false, retryAfterMs: retryAfterMs)
        }
    }

    // MARK: Accounting

    /// Acked messages missing from this client's sets, and messages received that were never
    /// acked, given every sender's acked set.
    func losses(acked: [Int: BitSet]) -> (lost: Int, unacked: Int) {
        var lost = 0
        var unacked = 0
        for rank in received.indices {
            let sender = plan.roomIndex + rank * plan.roomCount
            let sent = acked[sender] ?? BitSet()
            lost += sent.subtractingCount(received[rank])
            unacked += received[rank].subtractingCount(sent)
        }
        return (lost, unacked)
    }
}
