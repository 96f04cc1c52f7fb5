import Logging
import NIOCore
import NIOWebSocket

/// Where the hub sends one client's frames: a WebSocket, or a long-polling session.
protocol EventSink: AnyObject, Sendable {
    /// Queues one encoded envelope; never waits.
    func send(_ frame: ByteBuffer)
    /// Ends the client's session with a WebSocket close code.
    func close(code: WebSocketErrorCode, reason: String)
}

/// Sits in a WebSocket's channel pipeline, behind the frame decoder: writes the hub's frames
/// straight to the socket, coalescing flushes, pings on schedule, and closes a connection that
/// stops answering or falls too far behind.
///
/// Writing here rather than through the async outbound writer lets one encoded buffer go to many
/// sockets without a task switch per frame, and makes a slow client visible in the channel's own
/// outbound buffer.
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

    /// Queues a text frame; the flush happens once for everything queued in this event-loop tick.
    func write(_ buffer: ByteBuffer) {
        guard let context, !closing else { return }
        context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: buffer)), promise: nil)
        if !flushPending {
            flushPending = true
            let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
            context.eventLoop.execute { handler.value.flush() }
        }
    }

    private func flush() {
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

    func send(_ frame: ByteBuffer) {
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
            return NIOLoopBound(handler, eventLoop: channel.eventLoop)
        }.get()
        return SocketWriter(handler: handler, eventLoop: channel.eventLoop)
    }
}

/// One frame for many sinks: the sockets of each event loop are written in one task on that
/// loop, instead of one task per socket.
struct FanOut {
    private var loops: [(loop: any EventLoop, handlers: [NIOLoopBound<SocketChannelHandler>])] = []
    private var others: [any EventSink] = []

    mutating func add(_ sink: any EventSink) {
        guard let socket = sink as? SocketWriter else {
            others.append(sink)
            return
        }
        if let index = loops.firstIndex(where: { $0.loop === socket.eventLoop }) {
            loops[index].handlers.append(socket.handler)
        } else {
            loops.append((socket.eventLoop, [socket.handler]))
        }
    }

    /// Queues the frame to every sink added.
    func send(_ frame: ByteBuffer) {
        for (loop, handlers) in loops {
            loop.execute {
                for handler in handlers { handler.value.write(frame) }
            }
        }
        for sink in others { sink.send(frame) }
    }
}
