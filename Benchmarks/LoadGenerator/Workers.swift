import Histogram
import NIOCore
import NIOPosix

/// What one event loop's connections have counted. Only that loop touches it, so counting
/// needs neither locks nor atomics; the orchestrator reads it by hopping onto the loop.
final class LoopStats {
    /// Send to receive of messages sent inside the measurement window, every delivery (µs).
    var latency = makeLatencyHistogram()
    /// The same since the last progress line.
    var intervalLatency = makeLatencyHistogram()
    /// Send to ack of messages sent inside the window (µs).
    var ackLatency = makeLatencyHistogram()
    var intervalAckLatency = makeLatencyHistogram()
    /// Rejoin times after a reconnect (recovery).
    var rejoinTimes = makeLatencyHistogram()
    var counts = Counters()
    var windowStart: UInt64 = .max
    var windowEnd: UInt64 = .max

    @inline(__always)
    func inWindow(_ time: UInt64) -> Bool { time >= windowStart && time < windowEnd }

    func countError(_ code: String) {
        counts.errors[code, default: 0] += 1
    }

    /// Counters and, when asked, the histograms; resets the interval histograms.
    func snapshot(histograms: Bool) -> LoopSnapshot {
        var snapshot = LoopSnapshot(counts: counts, interval: intervalLatency, intervalAck: intervalAckLatency)
        intervalLatency.reset()
        intervalAckLatency.reset()
        if histograms {
            snapshot.latency = latency
            snapshot.ackLatency = ackLatency
            snapshot.rejoinTimes = rejoinTimes
        }
        return snapshot
    }
}

/// What a loop counts, apart from its histograms.
struct Counters: Sendable {
    var deliveries = 0
    var deliveriesInWindow = 0
    var duplicates = 0
    /// Messages received that the generator did not send (other clients of the server).
    var foreignMessages = 0
    var otherFrames = 0
    var malformedFrames = 0
    var sent = 0
    var acked = 0
    var ackedInWindow = 0
    var failed = 0
    var inFlight = 0
    /// Deliveries the acked messages should make: each acked message times its room's subscribers.
    var expectedDeliveries = 0
    var errors: [String: Int] = [:]
    var unexpectedCloses = 0
    var closeCodes: [Int: Int] = [:]
    /// Rejoins completed after a reconnect (recovery), and when the last one happened.
    var rejoins = 0
    var lastRejoinAt: UInt64 = 0
    var reconnectAttempts = 0

    mutating func merge(_ other: Counters) {
        deliveries += other.deliveries
        deliveriesInWindow += other.deliveriesInWindow
        duplicates += other.duplicates
        foreignMessages += other.foreignMessages
        otherFrames += other.otherFrames
        malformedFrames += other.malformedFrames
        sent += other.sent
        acked += other.acked
        ackedInWindow += other.ackedInWindow
        failed += other.failed
        inFlight += other.inFlight
        expectedDeliveries += other.expectedDeliveries
        errors.merge(other.errors, uniquingKeysWith: +)
        unexpectedCloses += other.unexpectedCloses
        closeCodes.merge(other.closeCodes, uniquingKeysWith: +)
        rejoins += other.rejoins
        lastRejoinAt = max(lastRejoinAt, other.lastRejoinAt)
        reconnectAttempts += other.reconnectAttempts
    }
}

/// A copy of the counters of one loop, or of all of them merged; reads the counters as its own
/// properties (`snapshot.deliveries`).
@dynamicMemberLookup
struct LoopSnapshot: Sendable {
    var counts = Counters()
    var interval = makeLatencyHistogram()
    var intervalAck = makeLatencyHistogram()
    var latency = makeLatencyHistogram()
    var ackLatency = makeLatencyHistogram()
    var rejoinTimes = makeLatencyHistogram()

    subscript<Value>(dynamicMember keyPath: KeyPath<Counters, Value>) -> Value { counts[keyPath: keyPath] }

    mutating func merge(_ other: LoopSnapshot) {
        counts.merge(other.counts)
        interval.add(other.interval)
        intervalAck.add(other.intervalAck)
        latency.add(other.latency)
        ackLatency.add(other.ackLatency)
        rejoinTimes.add(other.rejoinTimes)
    }
}

/// The state of one event loop: its counters and the clients it runs.
final class Worker {
    let eventLoop: any EventLoop
    let index: Int
    let stats = LoopStats()
    var clients: [ChatClient] = []

    init(eventLoop: any EventLoop, index: Int) {
        self.eventLoop = eventLoop
        self.index = index
    }
}

/// A handle on a `Worker` that any task may hold: work on it runs on its loop.
struct WorkerHandle: Sendable {
    let eventLoop: any EventLoop
    let worker: NIOLoopBound<Worker>

    /// Runs `body` on the worker's loop and returns its result.
    func run<Value: Sendable>(_ body: @escaping @Sendable (Worker) throws -> Value) async throws -> Value {
        let worker = self.worker
        return try await eventLoop.submit { try body(worker.value) }.get()
    }

    /// Runs `body` on the worker's loop and waits for the future it returns.
    func flatRun<Value: Sendable>(_ body: @escaping @Sendable (Worker) -> EventLoopFuture<Value>) async throws -> Value {
        let worker = self.worker
        return try await eventLoop.flatSubmit { body(worker.value) }.get()
    }
}

/// The generator's threads: one event loop each, each with its worker.
final class WorkerPool: Sendable {
    let group: MultiThreadedEventLoopGroup
    let workers: [WorkerHandle]

    private init(group: MultiThreadedEventLoopGroup, workers: [WorkerHandle]) {
        self.group = group
        self.workers = workers
    }

    static func make(threads: Int) async throws -> WorkerPool {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
        var workers: [WorkerHandle] = []
        for (index, loop) in group.makeIterator().enumerated() {
            let bound = try await loop.submit { NIOLoopBound(Worker(eventLoop: loop, index: index), eventLoop: loop) }.get()
            workers.append(WorkerHandle(eventLoop: loop, worker: bound))
        }
        return WorkerPool(group: group, workers: workers)
    }

    /// The worker that runs client `index`.
    func worker(for index: Int) -> WorkerHandle {
        workers[index % workers.count]
    }

    /// Every worker's counters merged.
    func snapshot(histograms: Bool = false) async throws -> LoopSnapshot {
        var total = LoopSnapshot()
        for worker in workers {
            total.merge(try await worker.run { $0.stats.snapshot(histograms: histograms) })
        }
        return total
    }

    /// Runs `body` on every worker and collects the results.
    func each<Value: Sendable>(_ body: @escaping @Sendable (Worker) throws -> Value) async throws -> [Value] {
        var values: [Value] = []
        for worker in workers { values.append(try await worker.run(body)) }
        return values
    }

    /// Sets the measurement window on every loop.
    func setWindow(start: UInt64, end: UInt64) async throws {
        _ = try await each { worker in
            worker.stats.windowStart = start
            worker.stats.windowEnd = end
        }
    }

    /// Closes every client's connection (with a close frame), waits a moment, and forgets them.
    func closeAll() async throws {
        _ = try await each { worker in
            for client in worker.clients { client.stop(closing: true) }
        }
        try await Task.sleep(for: .milliseconds(200))
        _ = try await each { worker in
            for client in worker.clients { client.abort() }
            worker.clients.removeAll()
        }
    }

    func shutdown() async {
        try? await group.shutdownGracefully()
    }
}
