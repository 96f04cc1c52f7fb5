import Logging
import NIOCore
import NIOWebSocket

/// Where the hub sends one client's frames: a WebSocket, or a long-polling session.
protocol EventSink: AnyObject, Sendable {
    /// Queues one encoded envelope; never waits.
    func send(_ frame: OutgoingFrame)
    /// Ends the client's session: a WebSocket with the end's close code, a poll with its answer.
    func close(_ end: SessionEnd)
    /// Queues frames as fast as the client takes them (a `join`'s replay): returns once all are
    /// queued; throws when the connection ends first.
    func sendPaced(_ frames: [OutgoingFrame]) async throws
}

extension EventSink {
    func sendPaced(_ frames: [OutgoingFrame]) async throws {
        for frame in frames { send(frame) }
    }
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
    /// Cuts the TCP connection when the close handshake does not finish in time (the client
    /// stopped reading, so the close frame waits behind its queue).
    private var closeDeadline: Scheduled<Void>?
    /// Checks text frames as they come, fragments included: RFC 6455 closes with 1007 on bad UTF-8.
    private var textValidator = UTF8Validator()
    private var readingText = false
    /// Frames written only while the socket is writable, and the promise to complete when all are.
    private var paced: (frames: ArraySlice<OutgoingFrame>, promise: EventLoopPromise<Void>)?
    private var writingPaced = false

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
        stopTimers()
        failPaced()
        self.context = nil
        self.rawContext = nil
    }

    private func stopTimers() {
        pingTask?.cancel()
        pingTask = nil
        closeDeadline?.cancel()
        closeDeadline = nil
    }

    /// Where complete frames are written; set once, right after this handler is added.
    func setRawContext(_ context: ChannelHandlerContext) {
        rawContext = context
    }

    func channelInactive(context: ChannelHandlerContext) {
        stopTimers()
        failPaced()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .pong:
            heartbeat.receivedPong()
        case .text, .continuation, .binary:
            // Nothing more is read from a connection being closed.
            guard !closing else { return }
            if frame.opcode == .text {
                readingText = true
                textValidator = UTF8Validator()
            } else if frame.opcode == .binary {
                readingText = false
            }
            if readingText {
                let valid = textValidator.consume(frame.data, maskKey: frame.maskKey) && (!frame.fin || textValidator.isComplete)
                if frame.fin { readingText = false }
                guard valid else {
                    close(code: .dataInconsistentWithMessage, reason: "a text frame is not valid UTF-8")
                    return
                }
            }
        default:
            break
        }
        context.fireChannelRead(data)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { writePaced() }
        context.fireChannelWritabilityChanged()
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

    /// Writes a `join`'s replay a little at a time: while the socket is writable, then on each
    /// change back to writable, so that a replay of any size reaches a client that reads without
    /// ever counting as a backlog. Frames queued meanwhile (other rooms) go out between them.
    func writePaced(_ frames: [OutgoingFrame], promise: EventLoopPromise<Void>) {
        guard rawContext != nil, !closing, paced == nil else {
            promise.fail(ChannelError.ioOnClosedChannel)
            return
        }
        paced = (frames[...], promise)
        writePaced()
    }

    private func writePaced() {
        // Writes and flushes change the writability, which calls back in here: one loop at a time.
        guard !writingPaced else { return }
        writingPaced = true
        defer { writingPaced = false }
        while var current = paced, let context, let rawContext, !closing {
            while let frame = current.frames.first, context.channel.isWritable {
                current.frames.removeFirst()
                rawContext.write(NIOAny(frame.wire), promise: nil)
            }
            paced = current
            context.flush()
            // The flush may have closed the connection (and failed the promise) or made room.
            guard let after = paced else { return }
            if after.frames.isEmpty {
                paced = nil
                after.promise.succeed()
                return
            }
            guard context.channel.isWritable else { return }
        }
    }

    private func failPaced() {
        let promise = paced?.promise
        paced = nil
        promise?.fail(ChannelError.ioOnClosedChannel)
    }

    private func pingDue() {
        guard let context else { return }
        guard case .sendPing(let number) = heartbeat.pingDue() else { return }
        var payload = context.channel.allocator.buffer(capacity: 8)
        payload.writeInteger(UInt64(number))
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: payload)), promise: nil)
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: pingTimeout) {
            let handler = handler.value
            if handler.heartbeat.timeoutDue(number: number) == .close {
                handler.logger.debug("cutting a connection that did not answer a ping")
                handler.abort()
            }
        }
    }

    /// Ends the TCP connection at once, whatever waits unsent: a close frame could not pass it.
    private func abort() {
        guard let context else { return }
        closing = true
        failPaced()
        context.close(promise: nil)
    }

    /// Sends a close frame and closes the connection; cuts it after the ping timeout when the
    /// close frame cannot get through.
    func close(code: WebSocketErrorCode, reason: String) {
        guard let context, !closing else { return }
        closing = true
        failPaced()
        var data = context.channel.allocator.buffer(capacity: 2 + reason.utf8.count)
        data.write(webSocketErrorCode: code)
        data.writeString(reason)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)))
            .whenComplete { _ in channel.close(promise: nil) }
        closeDeadline = context.eventLoop.scheduleTask(in: pingTimeout) {
            channel.close(promise: nil)
        }
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

    func close(_ end: SessionEnd) {
        let handler = self.handler
        let code = WebSocketErrorCode(codeNumber: Int(end.closeCode.rawValue))
        eventLoop.execute { handler.value.close(code: code, reason: end.reason) }
    }

    func sendPaced(_ frames: [OutgoingFrame]) async throws {
        guard !frames.isEmpty else { return }
        let promise = eventLoop.makePromise(of: Void.self)
        let handler = self.handler
        eventLoop.execute { handler.value.writePaced(frames, promise: promise) }
        try await promise.futureResult.get()
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

/// A UTF-8 check that takes a text message fragment by fragment (RFC 3629: no overlong forms,
/// no surrogates, nothing above U+10FFFF), so that a character split between fragments passes.
struct UTF8Validator {
    /// Continuation bytes still expected, and the range the next one must fall in.
    private var remaining = 0
    private var lower: UInt8 = 0x80
    private var upper: UInt8 = 0xBF

    /// Whether no character is left unfinished.
    var isComplete: Bool { remaining == 0 }

    /// Checks the (masked, when `maskKey` is given) bytes of one frame.
    mutating func consume(_ buffer: ByteBuffer, maskKey: WebSocketMaskingKey?) -> Bool {
        buffer.withUnsafeReadableBytes { bytes in
            guard let maskKey else { return consume(bytes) }
            for index in bytes.indices where !consume(bytes[index] ^ maskKey[index % 4]) { return false }
            return true
        }
    }

    private mutating func consume(_ bytes: UnsafeRawBufferPointer) -> Bool {
        for byte in bytes where !consume(byte) { return false }
        return true
    }

    mutating func consume(_ byte: UInt8) -> Bool {
        if remaining == 0 {
            switch byte {
            case 0x00...0x7F: return true
            case 0xC2...0xDF: remaining = 1
            case 0xE0: (remaining, lower) = (2, 0xA0)
            case 0xE1...0xEC, 0xEE...0xEF: remaining = 2
            case 0xED: (remaining, upper) = (2, 0x9F)
            case 0xF0: (remaining, lower) = (3, 0x90)
            case 0xF1...0xF3: remaining = 3
            case 0xF4: (remaining, upper) = (3, 0x8F)
            default: return false
            }
            return true
        }
        guard byte >= lower, byte <= upper else { return false }
        (remaining, lower, upper) = (remaining - 1, 0x80, 0xBF)
        return true
    }
}
