import NIOCore
import Synchronization

/// A bounded queue between one producer (the client's dispatcher) and one consumer (a stream's reader, a
/// listener's task), with a policy per element.
///
/// - A **lossless** element (a message, a sent or refused message, a membership change…) is never
///   dropped: when `capacity` of them wait, ``push(_:lossy:)`` waits until the consumer takes one. The
///   dispatcher waits with it, the client stops reading its socket, and the server's rule for slow
///   clients applies: back-pressure from the reader to the server. ``allowOverflow(_:)`` raises the
///   bound to `overflowCapacity` for as long as the producer must read on (an answer it waits for
///   comes after the elements before it).
/// - A **lossy** element (typing, presence, a status) never waits: past `lossyCapacity` of them, the
///   oldest waiting lossy element is dropped, so the newest is kept.
///
/// When the consumer goes away (its stream is dropped or its task cancelled) the queue closes: what
/// waits is dropped and every later push returns at once. When the producer is stopping
/// (``stopWaiting()``), pushes no longer wait, so that a consumer that stopped reading cannot hold it up.
final class EventQueue<Element: Sendable>: Sendable {
    private struct Entry {
        var element: Element
        var lossy: Bool
    }

    private struct State {
        var entries = CircularBuffer<Entry>()
        var lossless = 0
        var lossy = 0
        var consumer: CheckedContinuation<Element?, Never>?
        /// Producers waiting for room, by an id to find one whose task is cancelled.
        var producers: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextProducer = 0
        /// The producer ended: the consumer gets what waits, then the end.
        var finished = false
        /// The consumer went away: nothing is kept.
        var closed = false
        /// The producer is stopping: lossless elements are kept past the capacity rather than waited for.
        var unbounded = false
        /// Lossless elements kept before the producer waits: the capacity, or the overflow capacity
        /// while ``EventQueue/allowOverflow(_:)`` allows it.
        var limit: Int

        /// Whether a lossless element may be added (or dropped, once the queue ended) without waiting.
        var hasRoom: Bool {
            closed || finished || unbounded || lossless < limit
        }

        /// Takes every waiting producer, to resume outside the lock.
        mutating func takeProducers() -> [CheckedContinuation<Void, Never>] {
            defer { producers = [:] }
            return Array(producers.values)
        }
    }

    let capacity: Int
    let lossyCapacity: Int
    /// Lossless elements kept while ``allowOverflow(_:)`` allows more than `capacity`.
    let overflowCapacity: Int
    private let state: Mutex<State>

    init(capacity: Int, lossyCapacity: Int, overflowCapacity: Int = 0) {
        self.capacity = max(1, capacity)
        self.lossyCapacity = max(1, lossyCapacity)
        self.overflowCapacity = max(self.capacity, overflowCapacity)
        self.state = Mutex(State(limit: self.capacity))
    }

    /// Adds an element; a lossless one waits while as many lossless ones wait as the limit allows (`capacity`, or `overflowCapacity`).
    func push(_ element: Element, lossy: Bool) async {
        while true {
            let full = state.withLock { state -> Bool in
                guard !state.closed, !state.finished else { return false }
                if !lossy && !state.hasRoom { return true }
                append(Entry(element: element, lossy: lossy), to: &state)
                return false
            }
            guard full else { return }
            // Not cancellable: the element must not be lost. The wait ends when the consumer takes one, goes
            // away, or the producer stops waiting.
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    if state.hasRoom { return true }
                    state.nextProducer += 1
                    state.producers[state.nextProducer] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        }
    }

    /// Adds an element without waiting, whatever the count; for producers that cannot wait (under a lock),
    /// and that wait with ``waitForSpace()`` later, outside of it.
    func pushNow(_ element: Element, lossy: Bool = false) {
        state.withLock { state in
            guard !state.closed, !state.finished else { return }
            append(Entry(element: element, lossy: lossy), to: &state)
        }
    }

    /// Returns when fewer than `capacity` lossless elements wait (or the queue ended), or the task is cancelled:
    /// a task of the client that waits here must end when the client stops, whether or not anyone reads.
    func waitForSpace() async {
        let id = state.withLock { state in
            state.nextProducer += 1
            return state.nextProducer
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    if state.hasRoom || Task.isCancelled { return true }
                    state.producers[id] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.producers.removeValue(forKey: id) }?.resume()
        }
    }

    /// The producer is stopping: from now on a push never waits (lossless elements are kept past the capacity,
    /// bounded by what the producer still has), and a push waiting now goes on. The consumer still gets everything.
    func stopWaiting() {
        let producers = state.withLock { state in
            state.unbounded = true
            return state.takeProducers()
        }
        for producer in producers { producer.resume() }
    }

    /// Lets the producer add up to `overflowCapacity` lossless elements (or, `false`, again `capacity`);
    /// a producer waiting for space goes on when the new limit leaves room.
    func allowOverflow(_ allowed: Bool) {
        let producers = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.limit = allowed ? overflowCapacity : capacity
            return state.hasRoom ? state.takeProducers() : []
        }
        for producer in producers { producer.resume() }
    }

    /// Whether as many lossless elements wait as the producer may add now.
    var isFull: Bool { state.withLock { !$0.hasRoom } }

    /// Whether `capacity` lossless elements or more wait (the overflow aside).
    var isBeyondCapacity: Bool { state.withLock { $0.lossless >= capacity } }

    private func append(_ entry: Entry, to state: inout State) {
        if let consumer = state.consumer {
            state.consumer = nil
            // Resumed under the lock: a continuation may be resumed anywhere, and this keeps the order.
            consumer.resume(returning: entry.element)
            return
        }
        if entry.lossy {
            if state.lossy >= lossyCapacity, let oldest = state.entries.firstIndex(where: { $0.lossy }) {
                state.entries.remove(at: oldest)
                state.lossy -= 1
            }
            state.lossy += 1
        } else {
            state.lossless += 1
        }
        state.entries.append(entry)
    }

    /// The next element; `nil` once the queue is finished and empty, or closed.
    func next() async -> Element? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Element?, Never>) in
                let (now, producers) = state.withLock { state -> (Element??, [CheckedContinuation<Void, Never>]) in
                    if state.closed { return (.some(nil), []) }
                    if let entry = state.entries.popFirst() {
                        if entry.lossy { state.lossy -= 1 } else { state.lossless -= 1 }
                        return (.some(entry.element), state.hasRoom ? state.takeProducers() : [])
                    }
                    if state.finished || Task.isCancelled { return (.some(nil), []) }
                    state.consumer = continuation
                    return (nil, [])
                }
                for producer in producers { producer.resume() }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            close()
        }
    }

    /// The producer ends: the consumer gets what waits, then `nil`.
    func finish() {
        let (consumer, producers) = state.withLock { state in
            state.finished = true
            defer { state.consumer = nil }
            return (state.consumer, state.takeProducers())
        }
        consumer?.resume(returning: nil)
        for producer in producers { producer.resume() }
    }

    /// The consumer went away: drop what waits, and let the producer go on without it.
    func close() {
        let (consumer, producers) = state.withLock { state in
            state.closed = true
            state.entries.removeAll()
            state.lossless = 0
            state.lossy = 0
            defer { state.consumer = nil }
            return (state.consumer, state.takeProducers())
        }
        consumer?.resume(returning: nil)
        for producer in producers { producer.resume() }
    }

    var isClosed: Bool { state.withLock { $0.closed } }

    /// A stream that reads this queue, and closes it when the stream is dropped or its reader cancelled.
    func stream() -> AsyncStream<Element> {
        let closer = Closer(self)
        return AsyncStream(unfolding: { [closer] in await closer.queue.next() }, onCancel: { [closer] in closer.queue.close() })
    }

    /// Closes the queue when the last stream that reads it is gone (its deinit runs with the stream's).
    private final class Closer: Sendable {
        let queue: EventQueue
        init(_ queue: EventQueue) { self.queue = queue }
        deinit { queue.close() }
    }
}
