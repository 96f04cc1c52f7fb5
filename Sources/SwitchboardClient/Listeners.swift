import Synchronization

/// What a listener registration returns: call ``cancel()`` to stop listening.
///
/// Dropping the token does not stop the listener (it lives as long as the client), so that
/// `_ = client.onMessage { … }` does what it reads as.
///
/// ```swift
/// let token = client.onTyping(in: roomId) { typing in showTyping(typing) }
/// …
/// token.cancel()
/// ```
public final class ListenerToken: Sendable {
    private let onCancel: Mutex<(@Sendable () -> Void)?>

    init(_ onCancel: @escaping @Sendable () -> Void) {
        self.onCancel = Mutex(onCancel)
    }

    /// Stops the listener. Calling it again does nothing.
    public func cancel() {
        let action = onCancel.withLock { action in
            defer { action = nil }
            return action
        }
        action?()
    }

    /// Whether ``cancel()`` was called.
    public var isCancelled: Bool { onCancel.withLock { $0 == nil } }
}

/// Hands every event to the streams and listeners that want it, each through a bounded queue of its own.
///
/// Only the client's dispatcher task calls ``publish(_:)``, one event at a time, so every
/// subscriber sees events in the order the client decided them. Each stream and each listener has
/// its own ``EventQueue``: a listener runs on a task of its own, so one that is slow delays nobody
/// until its queue is full of messages, and then, by the lossless policy, everyone (see
/// ``ClientConfiguration/EventBuffers``).
final class EventHub: Sendable {
    /// An event, and for a status the number of the change, to order it against a status read directly.
    struct Item: Sendable {
        var event: ClientEvent
        var statusVersion: Int

        /// Live-only events, of which the newest matter: typing, presence, statuses, joins and leaves of connections.
        var isLossy: Bool {
            switch event {
            case .typing, .presence, .status, .memberJoined, .memberLeft, .unknown: true
            default: false
            }
        }
    }

    struct Subscriber: Sendable {
        var deliver: @Sendable (Item) async -> Void
        var isGone: @Sendable () -> Bool
        var finish: @Sendable () -> Void
        /// Lets ``deliver`` go on without waiting for the reader (see ``EventQueue/stopWaiting()``).
        var stopWaiting: @Sendable () -> Void
    }

    private struct State {
        var subscribers: [Int: Subscriber] = [:]
        var nextID = 0
        var finished = false
        var stopping = false
    }

    private let state = Mutex(State())
    let buffers: ClientConfiguration.EventBuffers

    init(buffers: ClientConfiguration.EventBuffers) {
        self.buffers = buffers
    }

    /// Adds a subscriber; `nil` when the hub is finished, and the caller should finish the subscriber.
    func add(_ subscriber: Subscriber) -> Int? {
        let (id, stopping) = state.withLock { state -> (Int?, Bool) in
            guard !state.finished else { return (nil, false) }
            state.nextID += 1
            state.subscribers[state.nextID] = subscriber
            return (state.nextID, state.stopping)
        }
        if stopping { subscriber.stopWaiting() }
        return id
    }

    func remove(_ id: Int) {
        _ = state.withLock { $0.subscribers.removeValue(forKey: id) }
    }

    func publish(_ item: Item) async {
        let subscribers = state.withLock { state in
            state.subscribers = state.subscribers.filter { !$0.value.isGone() }
            return state.subscribers.keys.sorted().compactMap { state.subscribers[$0] }
        }
        for subscriber in subscribers { await subscriber.deliver(item) }
    }

    /// The client is stopping: the dispatcher no longer waits for any reader, so that one that stopped reading
    /// (an application calling ``ChatClient/disconnect()`` from inside its loop over a stream) cannot keep the
    /// client from stopping. What the client still has to hand over (bounded by its own queue) is kept for each
    /// reader past its buffer, and the streams end after it.
    func stopWaiting() {
        let subscribers = state.withLock { state in
            state.stopping = true
            return Array(state.subscribers.values)
        }
        for subscriber in subscribers { subscriber.stopWaiting() }
    }

    /// Finishes every stream and listener; later subscribers are finished at once.
    func finish() {
        let subscribers = state.withLock { state in
            state.finished = true
            defer { state.subscribers = [:] }
            return Array(state.subscribers.values)
        }
        for subscriber in subscribers { subscriber.finish() }
    }

    /// A queue fed with what `transform` keeps of each event; finished when the client stops.
    func queue<Element: Sendable>(_ transform: @escaping @Sendable (Item) -> Element?) -> EventQueue<Element> {
        let queue = EventQueue<Element>(capacity: buffers.messages, lossyCapacity: buffers.live)
        let subscriber = Subscriber(
            deliver: { item in
                if let element = transform(item) { await queue.push(element, lossy: item.isLossy) }
            },
            isGone: { queue.isClosed },
            finish: { queue.finish() },
            stopWaiting: { queue.stopWaiting() }
        )
        if add(subscriber) == nil { queue.finish() }
        return queue
    }

    /// A stream of what `transform` keeps of each event; it ends when the client stops.
    func stream<Element: Sendable>(_ transform: @escaping @Sendable (ClientEvent) -> Element?) -> AsyncStream<Element> {
        queue { transform($0.event) }.stream()
    }

    /// A listener called, on a task of its own, with what `transform` keeps of each event, until the token is cancelled.
    func listen<Element: Sendable>(
        _ transform: @escaping @Sendable (ClientEvent) -> Element?, _ callback: @escaping @Sendable (Element) -> Void
    ) -> ListenerToken {
        let queue = queue { transform($0.event) }
        Task {
            while let element = await queue.next() { callback(element) }
        }
        return ListenerToken { queue.close() }
    }
}
