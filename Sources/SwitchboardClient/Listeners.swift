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

/// Hands every event to the streams and listeners that want it.
///
/// Only the client's dispatcher task calls ``publish(_:)``, one event at a time, so every
/// subscriber sees events in the order the client decided them. Callbacks run on that task,
/// outside any lock, so a callback may call the client.
final class EventHub: Sendable {
    /// An event, and for a status the number of the change, to order it against a status read directly.
    struct Item: Sendable {
        var event: ClientEvent
        var statusVersion: Int
    }

    struct Subscriber: Sendable {
        var deliver: @Sendable (Item) -> Void
        var finish: @Sendable () -> Void
    }

    private struct State {
        var subscribers: [Int: Subscriber] = [:]
        var nextID = 0
        var finished = false
    }

    private let state = Mutex(State())

    /// Adds a subscriber; `nil` when the hub is finished, and the caller should finish the subscriber.
    func add(_ subscriber: Subscriber) -> Int? {
        state.withLock { state in
            guard !state.finished else { return nil }
            state.nextID += 1
            state.subscribers[state.nextID] = subscriber
            return state.nextID
        }
    }

    func remove(_ id: Int) {
        _ = state.withLock { $0.subscribers.removeValue(forKey: id) }
    }

    func publish(_ item: Item) {
        let subscribers = state.withLock { state in
            state.subscribers.keys.sorted().compactMap { state.subscribers[$0] }
        }
        for subscriber in subscribers { subscriber.deliver(item) }
    }

    /// Finishes every stream; later subscribers are finished at once.
    func finish() {
        let subscribers = state.withLock { state in
            state.finished = true
            defer { state.subscribers = [:] }
            return Array(state.subscribers.values)
        }
        for subscriber in subscribers { subscriber.finish() }
    }

    /// A stream of what `transform` keeps of each event; it ends when the client stops.
    func stream<Element: Sendable>(_ transform: @escaping @Sendable (ClientEvent) -> Element?) -> AsyncStream<Element> {
        let (stream, continuation) = AsyncStream.makeStream(of: Element.self, bufferingPolicy: .unbounded)
        let subscriber = Subscriber(
            deliver: { item in
                if let element = transform(item.event) { continuation.yield(element) }
            },
            finish: { continuation.finish() }
        )
        if let id = add(subscriber) {
            continuation.onTermination = { [weak self] _ in self?.remove(id) }
        } else {
            continuation.finish()
        }
        return stream
    }

    /// A listener called with what `transform` keeps of each event, until the token is cancelled.
    func listen<Element: Sendable>(
        _ transform: @escaping @Sendable (ClientEvent) -> Element?, _ callback: @escaping @Sendable (Element) -> Void
    ) -> ListenerToken {
        let subscriber = Subscriber(
            deliver: { item in
                if let element = transform(item.event) { callback(element) }
            },
            finish: {}
        )
        guard let id = add(subscriber) else { return ListenerToken {} }
        return ListenerToken { [weak self] in self?.remove(id) }
    }
}
