import NIOCore
import NIOPosix
import Synchronization
import SwitchboardProtocol
import SwitchboardStore

/// Who gets told that a message was stored, and how.
enum MessageReply: Sendable {
    /// A WebSocket: its `ack` (with the request's `ref`) goes out after the message's own event,
    /// batched with the other frames to its event loop; a failure goes to `onFailure`.
    /// `answered` runs once either is on its way to the socket.
    case socket(any EventSink, ref: String?, onFailure: @Sendable (ProtocolError) -> Void, answered: @Sendable () -> Void)
    /// Anyone else (HTTP): called once the message is published, or with the failure.
    case callback(@Sendable (Result<MessageAck, ProtocolError>) -> Void)
}

/// Publishes committed messages off the store's commit loop, a batch at a time.
///
/// The store calls its completions one after another on its writer, between commits; encoding
/// and fanning out there would hold the next commit back. So a completion only queues its
/// outcome here, and one drain on an event loop takes everything queued, encodes each message
/// once (its event and its ack share the message's JSON) and hands the batch to the hub.
/// Queue order is commit order, and only one drain runs at a time, so rooms stay in `seq` order.
final class Publisher: Sendable {
    struct Item: Sendable {
        var result: Result<AppendResult, ProtocolError>
        var reply: MessageReply
        var receivedAt: ContinuousClock.Instant
    }

    private struct Queue {
        var items: [Item] = []
        var isDraining = false
    }

    private let queue = Mutex(Queue())
    private let hub: Hub
    private let metrics: ServerMetrics
    private let loop: any EventLoop

    init(hub: Hub, metrics: ServerMetrics) {
        self.hub = hub
        self.metrics = metrics
        self.loop = MultiThreadedEventLoopGroup.singleton.next()
    }

    /// Queues a store outcome; returns at once. Call in commit order.
    func enqueue(_ item: Item) {
        let startsDrain = queue.withLock { queue in
            queue.items.append(item)
            defer { queue.isDraining = true }
            return !queue.isDraining
        }
        if startsDrain {
            loop.execute { self.drain() }
        }
    }

    private func drain() {
        while true {
            let items = queue.withLock { queue in
                if queue.items.isEmpty { queue.isDraining = false }
                defer { queue.items = [] }
                return queue.items
            }
            guard !items.isEmpty else { return }
            publish(items)
        }
    }

    private func publish(_ items: [Item]) {
        let now = WallClock.milliseconds()
        var publications: [Hub.Publication] = []
        publications.reserveCapacity(items.count)
        // Callbacks run after the publications before them are queued, so that an HTTP answer
        // or an error never overtakes what was stored earlier.
        var callbacks: [() -> Void] = []
        var answeredCallbacks: [@Sendable () -> Void] = []
        func flush() {
            if !publications.isEmpty {
                hub.publish(publications, now: now)
                publications.removeAll(keepingCapacity: true)
            }
            for callback in callbacks { callback() }
            callbacks.removeAll()
        }
        for item in items {
            switch (item.result, item.reply) {
            case (.success(let stored), .socket(let sink, let ref, _, let answered)):
                answeredCallbacks.append(answered)
                let json = OutgoingFrame.messageJSON(stored.message)
                publications.append(Hub.Publication(
                    message: stored.message,
                    event: stored.duplicate ? nil : OutgoingFrame.messageEvent(stored.message, messageJSON: json, now: now),
                    ack: (OutgoingFrame.messageAck(stored.message, messageJSON: json, duplicate: stored.duplicate, ref: ref, now: now), sink)))
            case (.success(let stored), .callback(let callback)):
                if !stored.duplicate {
                    let json = OutgoingFrame.messageJSON(stored.message)
                    publications.append(Hub.Publication(
                        message: stored.message, event: OutgoingFrame.messageEvent(stored.message, messageJSON: json, now: now), ack: nil))
                }
                flush()
                callback(.success(MessageAck(message: stored.message, duplicate: stored.duplicate)))
            case (.failure(let error), .socket(_, _, let onFailure, let answered)):
                answeredCallbacks.append(answered)
                callbacks.append { onFailure(error) }
                flush()
            case (.failure(let error), .callback(let callback)):
                callbacks.append { callback(.failure(error)) }
                flush()
            }
        }
        flush()
        for answered in answeredCallbacks { answered() }
        for item in items {
            if case .success(let stored) = item.result, !stored.duplicate {
                metrics.stored.increment()
                metrics.recordDelivery(since: item.receivedAt)
            }
        }
    }
}
