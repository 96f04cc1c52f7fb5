import NIOCore
import Synchronization

/// A bounded queue between one producer (the client's dispatcher) and one consumer (a stream's reader, a
/// listener's task), with a policy per element.
///
/// - A **lossless** element (a message, a sent or refused message, a membership change…) is never
///   dropped: when `capacity` of them wait, ``push(_:lossy:)`` waits until the consumer takes one. The
///   dispatcher waits with it, the client stops reading its socket, and the server's rule for slow
///   clients applies: back-pressure from the reader to the server.
/// - A **lossy** element (typing, presence, a status) never waits: past `lossyCapacity` of them, the
///   oldest waiting lossy element is dropped, so the newest is kept.
///
/// When the consumer goes away (its stream is dropped or its task cancelled) the queue closes: what
/// waits is dropped and every later push returns at once.
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
        var producers: [CheckedContinuation<Void, Never>] = []
        /// The producer ended: the consumer gets what waits, then the end.
        var finished = false
        /// The consumer went away: nothing is kept.
        var closed = false
    }

    let capacity: Int
    let lossyCapacity: Int
    private let state = Mutex(State())

    init(capacity: Int, lossyCapacity: Int) {
        self.capacity = max(1, capacity)
        self.lossyCapacity = max(1, lossyCapacity)
    }

    /// Adds an element; a lossless one waits while `capacity` lossless ones wait already.
    func push(_ element: Element, lossy: Bool) async {
        while true {
            let full = state.withLock { state -> Bool in
                guard !state.closed, !state.finished else { return false }
                if !lossy && state.lossless >= capacity { return true }
                append(Entry(element: element, lossy: lossy), to: &state)
                return false
            }
            guard full else { return }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    if state.closed || state.finished || state.lossless < capacity { return true }
                    state.producers.append(continuation)
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

    /// Returns when fewer than `capacity` lossless elements wait (or the queue ended).
    func waitForSpace() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if state.closed || state.finished || state.lossless < capacity { return true }
                state.producers.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    /// Whether `capacity` lossless elements or more wait.
    var isFull: Bool { state.withLock { $0.lossless >= capacity } }

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
                        var producers: [CheckedContinuation<Void, Never>] = []
                        if state.lossless < capacity {
                            producers = state.producers
                            state.producers = []
                        }
                        return (.some(entry.element), producers)
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
            defer {
                state.consumer = nil
                state.producers = []
            }
            return (state.consumer, state.producers)
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
            defer {
                state.consumer = nil
                state.producers = []
            }
            return (state.consumer, state.producers)
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
