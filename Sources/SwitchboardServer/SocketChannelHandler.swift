import Logging
import NIOCore
import NIOWebSocket

/// Where the hub sends one client's frames: a WebSocket, or a long-polling session.
protocol EventSink: AnyObject, Sendable {
    /// Queues one encoded envelope; never waits.
    func send(_ frame: OutgoingFrame)
    /// Ends the client's session with a WebSocket close code.
    func close(code: WebSocketErrorCode, reason: String)
}

/// Sits in a WebSocket's channel pipeline, behind the frame decoder: writes the hub's frames
/// straight to the socket, coalescing flushes, pings on schedule, and closes a connection that
/// stops answering or falls too far behind.
///
/// Writing here rather than through the async outbound writer lets one encoded buffer go to many
/// sockets without a task switch per frame, and makes a slow client visible in the channel's own
/// outbound buffer. The hub's frames are complete WebSocket frames already (`OutgoingFrame.wire`),
/// so they are written from the context of a `RawFrameWriter` at the head of the pipeline, past
/// the frame encoder, which would otherwise allocate a header for every frame of every recipient.
final class SocketChannelHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let pingInterval: TimeAmount
    private let pingTimeout: TimeAmount
    private let maxOutboundBytes: Int
    private let logger: Logger
    private var heartbeat = Heartbeat()
    private var context: ChannelHandlerContext?
    /// The context of the `RawFrameWriter`: writes from it go straight to the socket.
    private var rawContext: ChannelHandlerContext?
    private var pingTask: RepeatedTask?
    private var flushPending = false
    private var closing = false

    init(configuration: ServerConfiguration, logger: Logger) {
        self.pingInterval = .nanoseconds(Int64(configuration.pingInterval.seconds * 1e9))
        self.pingTimeout = .nanoseconds(Int64(configuration.pingTimeout.seconds * 1e9))
        self.maxOutboundBytes = configuration.maxOutboundBytes
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        pingTask = context.eventLoop.scheduleRepeatedTask(initialDelay: pingInterval, delay: pingInterval) { _ in
            handler.value.pingDue()
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        pingTask?.cancel()
        pingTask = nil
        self.context = nil
        self.rawContext = nil
    }

    /// Where complete frames are written; set once, right after this handler is added.
    func setRawContext(_ context: ChannelHandlerContext) {
        rawContext = context
    }

    func channelInactive(context: ChannelHandlerContext) {
        pingTask?.cancel()
        pingTask = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if unwrapInboundIn(data).opcode == .pong {
            heartbeat.receivedPong()
        }
        context.fireChannelRead(data)
    }

    /// Queues a frame; the flush happens once for everything queued in this event-loop tick.
    func write(_ frame: OutgoingFrame) {
        guard let context else { return }
        if enqueue(frame) {
            let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
            context.eventLoop.execute { handler.value.flush() }
        }
    }

    /// Queues a frame without flushing. True when the caller must see to a `flush()`: the first
    /// frame since the last flush. (While false, a flush is already due.)
    func enqueue(_ frame: OutgoingFrame) -> Bool {
        guard let rawContext, !closing else { return false }
        rawContext.write(NIOAny(frame.wire), promise: nil)
        guard !flushPending else { return false }
        flushPending = true
        return true
    }

    /// Sends what was queued, and drops the connection when too much waits unsent.
    func flush() {
        flushPending = false
        guard let context, !closing else { return }
        context.flush()
        let unsent = (try? context.channel.syncOptions?.getOption(ChannelOptions.bufferedWritableBytes)) ?? 0
        if unsent > maxOutboundBytes {
            logger.info("closing a connection that fell behind", metadata: ["switchboard.unsent_bytes": "\(unsent)"])
            // Its queue is full, so a close frame would wait behind it: end the TCP connection.
            closing = true
            context.close(promise: nil)
        }
    }

    private func pingDue() {
        guard let context, !closing else { return }
        guard case .sendPing(let number) = heartbeat.pingDue() else { return }
        var payload = context.channel.allocator.buffer(capacity: 8)
        payload.writeInteger(UInt64(number))
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: payload)), promise: nil)
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: pingTimeout) {
            let handler = handler.value
            if handler.heartbeat.timeoutDue(number: number) == .close {
                handler.logger.debug("closing a connection that did not answer a ping")
                handler.close(code: .goingAway, reason: "ping timeout")
            }
        }
    }

    /// Sends a close frame and closes the connection.
    func close(code: WebSocketErrorCode, reason: String) {
        guard let context, !closing else { return }
        closing = true
        var data = context.channel.allocator.buffer(capacity: 2 + reason.utf8.count)
        data.write(webSocketErrorCode: code)
        data.writeString(reason)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)))
            .whenComplete { _ in channel.close(promise: nil) }
    }
}

/// The hub's handle on one WebSocket: hops onto the socket's event loop to write.
final class SocketWriter: EventSink {
    let handler: NIOLoopBound<SocketChannelHandler>
    let eventLoop: any EventLoop

    init(handler: NIOLoopBound<SocketChannelHandler>, eventLoop: any EventLoop) {
        self.handler = handler
        self.eventLoop = eventLoop
    }

    func send(_ frame: OutgoingFrame) {
        // Always through the loop's queue, even from the loop itself, so that frames keep the
        // order in which they were sent from anywhere.
        let handler = self.handler
        eventLoop.execute { handler.value.write(frame) }
    }

    func close(code: WebSocketErrorCode, reason: String) {
        let handler = self.handler
        eventLoop.execute { handler.value.close(code: code, reason: reason) }
    }

    /// Installs a handler behind the WebSocket frame decoder of `channel` and returns its writer.
    static func install(on channel: any Channel, configuration: ServerConfiguration, logger: Logger) async throws -> SocketWriter {
        let handler = try await channel.eventLoop.submit {
            let handler = SocketChannelHandler(configuration: configuration, logger: logger)
            let decoder = try channel.pipeline.syncOperations.context(handlerType: ByteToMessageHandler<WebSocketFrameDecoder>.self)
            try channel.pipeline.syncOperations.addHandler(handler, position: .after(decoder.handler))
            let raw = RawFrameWriter()
            try channel.pipeline.syncOperations.addHandler(raw, position: .first)
            handler.setRawContext(try channel.pipeline.syncOperations.context(handler: raw))
            return NIOLoopBound(handler, eventLoop: channel.eventLoop)
        }.get()
        return SocketWriter(handler: handler, eventLoop: channel.eventLoop)
    }
}

/// The head end of a WebSocket's pipeline, below the frame encoder: where complete frames
/// (`OutgoingFrame.wire`) enter, so that they reach the socket without being framed again.
final class RawFrameWriter: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
}

/// Frames for many sinks, collected under the hub's lock and sent once it is done: the sockets
/// of each event loop get their frames in one task on that loop, which writes all of them in
/// order and flushes each socket once, instead of one task and one flush per frame.
struct FanOut {
    private typealias Write = (handler: NIOLoopBound<SocketChannelHandler>, frame: OutgoingFrame)
    private var loops: [(loop: any EventLoop, writes: [Write])] = []
    private var others: [(sink: any EventSink, frame: OutgoingFrame)] = []

    /// Adds a frame for one sink, after those already added for it.
    mutating func add(_ frame: OutgoingFrame, to sink: any EventSink, socket: SocketWriter?) {
        guard let socket else {
            others.append((sink, frame))
            return
        }
        // Few loops (one per core): a linear search beats hashing.
        for index in loops.indices where loops[index].loop === socket.eventLoop {
            loops[index].writes.append((socket.handler, frame))
            return
        }
        loops.append((socket.eventLoop, [(socket.handler, frame)]))
    }

    var isEmpty: Bool { loops.isEmpty && others.isEmpty }

    /// Queues every frame added. Call under the hub's lock, so that frames sent by later calls
    /// queue behind these.
    func send() {
        for (loop, writes) in loops {
            loop.execute {
                var toFlush: [NIOLoopBound<SocketChannelHandler>] = []
                for write in writes where write.handler.value.enqueue(write.frame) {
                    toFlush.append(write.handler)
                }
                for handler in toFlush { handler.value.flush() }
            }
        }
        for (sink, frame) in others { sink.send(frame) }
    }
}
