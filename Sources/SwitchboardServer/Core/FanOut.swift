import NIOCore

/// Where the hub sends one client's frames: a WebSocket, or a long-polling session.
///
/// A sink that lives on an event loop (a WebSocket) names it in `eventLoop`; the fan-out then
/// queues all of a batch's frames for that loop's sinks in one task there, through
/// `enqueueOnLoop` and `flushOnLoop`, instead of one task per frame through `send`.
protocol EventSink: AnyObject, Sendable {
    /// Queues one encoded envelope; never waits.
    func send(_ frame: OutgoingFrame)
    /// Ends the client's session: a WebSocket with the end's close code, a poll with its answer.
    func close(_ end: SessionEnd)
    /// Queues frames as fast as the client takes them (a `join`'s replay): returns once all are
    /// queued; throws when the connection ends first.
    func sendPaced(_ frames: [OutgoingFrame]) async throws
    /// The loop on which `enqueueOnLoop` and `flushOnLoop` may be called; nil when the sink takes
    /// frames through `send` only.
    var eventLoop: (any EventLoop)? { get }
    /// On `eventLoop` only: queues a frame without sending it. True when the caller is to call
    /// `flushOnLoop()` once it has queued the rest of its batch.
    func enqueueOnLoop(_ frame: OutgoingFrame) -> Bool
    /// On `eventLoop` only: sends what `enqueueOnLoop` queued.
    func flushOnLoop()
}

extension EventSink {
    func sendPaced(_ frames: [OutgoingFrame]) async throws {
        for frame in frames { send(frame) }
    }

    var eventLoop: (any EventLoop)? { nil }

    func enqueueOnLoop(_ frame: OutgoingFrame) -> Bool {
        send(frame)
        return false
    }

    func flushOnLoop() {}
}

/// A sink and its event loop, looked up once per connection rather than once per frame.
struct Recipient {
    let sink: any EventSink
    let loop: (any EventLoop)?

    init(_ sink: any EventSink) {
        self.sink = sink
        self.loop = sink.eventLoop
    }
}

/// Frames for many sinks, collected under the hub's lock and sent once it is done: the sinks of
/// each event loop get their frames in one task on that loop, which queues all of them in order
/// and flushes each sink once, instead of one task and one flush per frame.
struct FanOut {
    private var loops: [(loop: any EventLoop, writes: [(sink: any EventSink, frame: OutgoingFrame)])] = []
    private var others: [(sink: any EventSink, frame: OutgoingFrame)] = []

    /// Adds a frame for one sink, after those already added for it.
    mutating func add(_ frame: OutgoingFrame, to recipient: Recipient) {
        guard let loop = recipient.loop else {
            others.append((recipient.sink, frame))
            return
        }
        // Few loops (one per core): a linear search beats hashing.
        for index in loops.indices where loops[index].loop === loop {
            loops[index].writes.append((recipient.sink, frame))
            return
        }
        loops.append((loop, [(recipient.sink, frame)]))
    }

    /// Queues every frame added. Call under the hub's lock, so that frames sent by later calls
    /// queue behind these.
    func send() {
        for (loop, writes) in loops {
            loop.execute {
                var toFlush: [any EventSink] = []
                toFlush.reserveCapacity(writes.count)
                for write in writes where write.sink.enqueueOnLoop(write.frame) {
                    toFlush.append(write.sink)
                }
                for sink in toFlush { sink.flushOnLoop() }
            }
        }
        for (sink, frame) in others { sink.send(frame) }
    }
}
