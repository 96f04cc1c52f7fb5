import Logging
import Synchronization
import NIOCore
import NIOWebSocket

/// One WebSocket connection, entirely in its channel pipeline behind NIO's frame decoder: no task
/// waits on it while it is idle.
///
/// Inbound, it feeds frames to a `WebSocketConnectionMachine` (the protocol's frame rules) and
/// hands complete messages to the connection's `WebSocketSession` one at a time: on the event loop
/// when the answer needs nothing from the store, else in a short task. Outbound, it writes the
/// hub's frames straight to the socket, flushing once per event-loop tick (or after `writeDelay`),
/// pings on schedule, and closes a connection that stops answering or falls too far behind.
///
/// Everything it writes is a complete WebSocket frame (the hub's are `OutgoingFrame.wire`; pings,
/// pongs and closes it frames itself), written from the context of a `RawFrameWriter` at the head
/// of the pipeline, past NIO's frame encoder (which the upgrader installs and which cannot be
/// removed), which would otherwise allocate a header for every frame of every recipient. NIO's
/// protocol error handler is not installed: the frame decoder's errors are answered here.
final class SocketChannelHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = Never
    typealias OutboundIn = Never
    typealias OutboundOut = ByteBuffer

    /// What is read from the client and not yet answered.
    enum Request: Sendable {
        case text(String)
        case binary
    }

    /// Handlers alive in this process, all servers together: a count that grows with closed
    /// connections is a leak (see `ConnectionChurnTests`).
    static let live = Atomic<Int>(0)

    /// Opens the connection's session (registers it with the hub) once the upgrade is done.
    typealias OpenSession = @Sendable (SocketWriter) async throws -> WebSocketSession

    /// Messages read and waiting for their answer; past it the socket is not read until they are
    /// answered, so that a client sending faster than it is answered cannot fill the memory.
    static let maxWaitingRequests = 16

    private let pingInterval: TimeAmount
    private let pingTimeout: TimeAmount
    private let writeDelay: TimeAmount?
    private let maxOutboundBytes: Int
    private let logger: Logger
    /// Dropped once called: it holds the caller's identity, which the session keeps from then on.
    private var openSession: OpenSession?
    private var machine: WebSocketConnectionMachine
    private var heartbeat = Heartbeat()
    private var context: ChannelHandlerContext?
    /// The context of the `RawFrameWriter`: writes from it go straight to the socket.
    private var rawContext: ChannelHandlerContext?
    private var pingTimer: NIOScheduledCallback?
    private var flushPending = false
    /// The pong for the newest ping read while the socket took no more writes, sent once it does.
    private var pendingPong: ByteBuffer?
    private var closing = false
    /// Cuts the TCP connection when the close handshake does not finish in time (the client
    /// stopped reading, so the close frame waits behind its queue).
    private var closeDeadline: Scheduled<Void>?
    /// The last ping's deadline; cancelled when the connection ends, so that it does not keep this
    /// handler (and its buffers) alive for `pingTimeout` after the close.
    private var pingDeadline: Scheduled<Void>?
    /// Frames written only while the socket is writable, and the promise to complete when all are.
    private var paced: (frames: ArraySlice<OutgoingFrame>, promise: EventLoopPromise<Void>)?
    private var writingPaced = false

    /// Nil until the session is open, and while a request is being answered (the task has it).
    private var session: WebSocketSession?
    private var sessionState = SessionState.opening
    /// An array, not a ring buffer: empty (and so unallocated) while the connection is idle.
    private var waiting: [Request] = []
    /// A `read` held back while too many requests wait.
    private var readHeld = false

    private enum SessionState {
        case opening, idle, answering, ended
    }

    init(configuration: ServerConfiguration, logger: Logger, openSession: @escaping OpenSession) {
        self.pingInterval = .nanoseconds(Int64(configuration.pingInterval.seconds * 1e9))
        self.pingTimeout = .nanoseconds(Int64(configuration.pingTimeout.seconds * 1e9))
        let delay = configuration.writeDelay.seconds
        self.writeDelay = delay > 0 ? .nanoseconds(Int64(delay * 1e9)) : nil
        self.maxOutboundBytes = configuration.maxOutboundBytes
        self.machine = WebSocketConnectionMachine(maxMessageBytes: configuration.limits.maxFrameBytes)
        self.logger = logger
        self.openSession = openSession
        Self.live.add(1, ordering: .relaxed)
    }

    deinit {
        Self.live.subtract(1, ordering: .relaxed)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        schedulePing(context: context)
        let raw = RawFrameWriter()
        do {
            try context.pipeline.syncOperations.addHandler(raw, position: .first)
            rawContext = try context.pipeline.syncOperations.context(handler: raw)
        } catch {
            context.close(promise: nil)
            return
        }
        let writer = SocketWriter(handler: handler, eventLoop: context.eventLoop)
        guard let openSession else { return }
        self.openSession = nil
        let opened = context.eventLoop.makePromise(of: WebSocketSession.self)
        opened.completeWithTask { try await openSession(writer) }
        opened.futureResult.whenComplete { result in handler.value.opened(result) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        stopTimers()
        failPaced()
        endSessionWhenIdle()
        self.context = nil
        self.rawContext = nil
    }

    private func stopTimers() {
        pingTimer?.cancel()
        pingTimer = nil
        closeDeadline?.cancel()
        closeDeadline = nil
        pingDeadline?.cancel()
        pingDeadline = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        closing = true
        stopTimers()
        failPaced()
        waiting.removeAll()
        endSessionWhenIdle()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // A graceful shutdown: the hub closes the connections it knows; this also reaches one
        // whose session is still opening.
        if event is ChannelShouldQuiesceEvent {
            close(.shuttingDown)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Closing already: the decoder's complaints about bytes after a bad frame change nothing,
        // and the close ends with the client's answer or its deadline (I/O errors close the
        // channel by themselves).
        guard !closing else { return }
        if let error = error as? NIOWebSocketError {
            // The frame decoder's: a frame over the size limit, or a control frame that breaks the
            // rules (answered as NIO's `WebSocketProtocolErrorHandler` would, which is not installed).
            close(code: error == .invalidFrameLength ? .messageTooLarge : .protocolError, reason: "")
        } else {
            logger.debug("websocket error", metadata: ["switchboard.error": "\(error)"])
            context.close(promise: nil)
        }
    }

    // MARK: Reading

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch machine.received(unwrapInboundIn(data)) {
        case .none:
            break
        case .text(let text):
            received(.text(text))
        case .binary:
            received(.binary)
        case .pong(let payload):
            answerPing(Self.frame(.pong, payload, allocator: context.channel.allocator))
        case .pongReceived:
            heartbeat.receivedPong()
        case .close(let code, let reason):
            sendClose(code: code, reason: reason)
        case .answerClose(let code):
            sendClose(code: code, reason: "", awaitingAnswer: false)
        case .closeAnswered:
            context.close(promise: nil)
        }
    }

    func read(context: ChannelHandlerContext) {
        guard waiting.count < Self.maxWaitingRequests else {
            readHeld = true
            return
        }
        context.read()
    }

    private func received(_ request: Request) {
        guard !closing else { return }
        waiting.append(request)
        answerNext()
    }

    private func opened(_ result: Result<WebSocketSession, any Error>) {
        switch result {
        case .success(let session):
            self.session = session
            sessionState = .idle
            session.log(.debug, "websocket opened")
            if closing {
                endSessionWhenIdle()
            } else {
                answerNext()
            }
        case .failure(let error):
            logger.error("cannot open a websocket session", metadata: ["switchboard.error": "\(error)"])
            sessionState = .ended
            close(code: .unexpectedServerError, reason: "internal error")
        }
    }

    /// Answers the waiting requests in order, unless one is being answered: here, those that need
    /// nothing from the store (most messages); the first that does, in a short task, which hands
    /// the session back when done.
    private func answerNext() {
        guard sessionState == .idle, !closing, let context, var session, !waiting.isEmpty else { return }
        // Answering, so that a close caused by writing an answer does not end the session under us.
        sessionState = .answering
        self.session = nil
        var inTask: WebSocketSession.Frame?
        var taken = 0
        while inTask == nil, !closing, taken < waiting.count {
            let request = waiting[taken]
            taken += 1
            switch request {
            case .text(let text):
                let frame = session.read(text: text)
                if !session.answerNow(frame) { inTask = frame }
            case .binary:
                session.handleBinary()
            }
        }
        // Once, not per request: one read of many small frames can queue thousands. (A close
        // meanwhile has emptied the queue already.)
        waiting.removeFirst(min(taken, waiting.count))
        if waiting.isEmpty { waiting = [] }
        if readHeld, waiting.count < Self.maxWaitingRequests {
            readHeld = false
            context.read()
        }
        guard let frame = inTask, !closing else {
            return answered(session: session, close: nil)
        }
        let answered = context.eventLoop.makePromise(of: (WebSocketSession, WebSocketSession.Close?).self)
        answered.completeWithTask { [session] in
            var session = session
            do throws(WebSocketSession.Close) {
                try await session.handle(frame)
                return (session, nil)
            } catch {
                return (session, error)
            }
        }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        answered.futureResult.whenSuccess { session, close in
            handler.value.answered(session: session, close: close)
        }
    }

    private func answered(session: WebSocketSession, close: WebSocketSession.Close?) {
        self.session = session
        sessionState = .idle
        if let close {
            session.log(.debug, "closing websocket", metadata: ["switchboard.reason": "\(close.reason)"])
            endSessionWhenIdle()
            self.close(code: close.code, reason: close.reason)
        } else if closing {
            endSessionWhenIdle()
        } else {
            answerNext()
        }
    }

    /// Leaves the hub once no request is being answered (a `join` in flight would otherwise
    /// subscribe a connection that is gone).
    private func endSessionWhenIdle() {
        guard sessionState == .idle, let session else { return }
        sessionState = .ended
        self.session = nil
        session.end()
    }

    // MARK: Writing

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            if let pong = pendingPong {
                pendingPong = nil
                answerPing(pong)
            }
            writePaced()
        }
        context.fireChannelWritabilityChanged()
    }

    /// Sends a pong while the socket takes writes; otherwise keeps only the newest, for when it
    /// does again (RFC 6455 5.5.3 lets a pong answer only the most recent ping): a client that
    /// sends pings and reads nothing cannot make pongs pile up in the server's memory.
    private func answerPing(_ pong: ByteBuffer) {
        guard let context, let rawContext, !closing else { return }
        guard context.channel.isWritable else {
            pendingPong = pong
            return
        }
        rawContext.writeAndFlush(wrapOutboundOut(pong), promise: nil)
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
    /// frame since the last flush. (While false, a flush is already due; with a write delay, it is
    /// scheduled here.)
    func enqueue(_ frame: OutgoingFrame) -> Bool {
        guard let rawContext, !closing else { return false }
        rawContext.write(NIOAny(frame.wire), promise: nil)
        guard !flushPending else { return false }
        flushPending = true
        guard let writeDelay, let context else { return true }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: writeDelay) { handler.value.flush() }
        return false
    }

    /// Sends what was queued, and drops the connection when too much waits unsent.
    func flush() {
        flushPending = false
        guard let context, let rawContext, !closing else { return }
        // From the head end: no handler above it holds frames back, and walking past them costs
        // on every delivery.
        rawContext.flush()
        // A writable channel holds less than its high water mark: asking for the exact figure
        // (an option look-up on every flush) is only worth it past that.
        guard !context.channel.isWritable || maxOutboundBytes < Self.highWaterMark else { return }
        let unsent = (try? context.channel.syncOptions?.getOption(ChannelOptions.bufferedWritableBytes)) ?? 0
        if unsent > maxOutboundBytes {
            logger.info("closing a connection that fell behind", metadata: ["switchboard.unsent_bytes": "\(unsent)"])
            // Its queue is full, so a close frame would wait behind it: end the TCP connection.
            abort()
        }
    }

    /// NIO's default high water mark of a channel's write buffer (the server keeps the default).
    static let highWaterMark = 64 * 1024

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
            rawContext.flush()
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

    private func schedulePing(context: ChannelHandlerContext) {
        let timer = PingTimer(handler: NIOLoopBound(self, eventLoop: context.eventLoop))
        pingTimer = try? context.eventLoop.scheduleCallback(in: pingInterval, handler: timer)
    }

    fileprivate func pingDue() {
        pingTimer = nil
        guard let context, !closing else { return }
        schedulePing(context: context)
        guard case .sendPing(let number) = heartbeat.pingDue() else { return }
        var payload = context.channel.allocator.buffer(capacity: 8)
        payload.writeInteger(UInt64(number))
        rawContext?.writeAndFlush(wrapOutboundOut(Self.frame(.ping, payload, allocator: context.channel.allocator)), promise: nil)
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        pingDeadline = context.eventLoop.scheduleTask(in: pingTimeout) {
            let handler = handler.value
            if handler.heartbeat.timeoutDue(number: number) == .close {
                handler.logger.debug("cutting a connection that did not answer a ping")
                handler.abort()
            }
        }
    }

    /// A final, unmasked control frame of the server (ping, pong, close): the bytes NIO's
    /// `WebSocketFrameEncoder` writes. A control frame carries at most 125 bytes (RFC 6455 5.5):
    /// a pong echoes a ping the decoder let through, a close one of the server's short reasons,
    /// so nothing is ever cut in practice; a longer payload is cut rather than framed wrongly.
    static func frame(_ opcode: WebSocketOpcode, _ payload: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer {
        let length = min(payload.readableBytes, 125)
        var frame = allocator.buffer(capacity: 2 + length)
        frame.writeInteger(0x80 | UInt8(webSocketOpcode: opcode))
        frame.writeInteger(UInt8(length))
        frame.writeImmutableBuffer(payload.getSlice(at: payload.readerIndex, length: length)!)
        return frame
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
        guard case .close(let code, let reason) = machine.close(code, reason: reason) else { return }
        sendClose(code: code, reason: reason)
    }

    /// Ends the session for one of the chat rules' reasons.
    func close(_ end: SessionEnd) {
        close(code: WebSocketErrorCode(codeNumber: Int(end.closeCode.rawValue)), reason: end.reason)
    }

    /// Writes a close frame, behind the frames queued so far on the connection's loop (answers
    /// given to requests read before the close go out through the loop's queue, see
    /// `SocketWriter.send`; one still waiting for the store, such as a message's ack, is not
    /// sent). The session ends at once: the close may wait for the client's answer.
    ///
    /// Answering the client's close, it then closes the connection. Otherwise it only closes its
    /// sending side, and reads (and drops) what the client still sends until its close frame or the
    /// end of its connection: closing a socket with unread bytes makes the kernel send a reset,
    /// which may destroy the close frame before the client has read it.
    private func sendClose(code: WebSocketErrorCode, reason: String, awaitingAnswer: Bool = true) {
        guard let context else { return }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute { handler.value.writeClose(code: code, reason: reason, awaitingAnswer: awaitingAnswer) }
    }

    private func writeClose(code: WebSocketErrorCode, reason: String, awaitingAnswer: Bool) {
        guard let context, let rawContext, !closing else { return }
        closing = true
        endSessionWhenIdle()
        failPaced()
        waiting.removeAll()
        if readHeld {
            readHeld = false
            context.read()
        }
        var data = context.channel.allocator.buffer(capacity: 2 + reason.utf8.count)
        data.write(webSocketErrorCode: code)
        data.writeString(reason)
        let channel = context.channel
        rawContext.writeAndFlush(wrapOutboundOut(Self.frame(.connectionClose, data, allocator: context.channel.allocator)))
            .whenComplete { written in
                guard awaitingAnswer, case .success = written else { return channel.close(promise: nil) }
                channel.close(mode: .output).whenFailure { _ in channel.close(promise: nil) }
            }
        closeDeadline = context.eventLoop.scheduleTask(in: pingTimeout) {
            channel.close(promise: nil)
        }
    }
}

/// Calls `pingDue` when a ping interval has passed. A scheduled callback costs no allocation
/// per connection, where a `RepeatedTask` keeps a task object, a promise and their callbacks.
private struct PingTimer: NIOScheduledCallbackHandler, Sendable {
    let handler: NIOLoopBound<SocketChannelHandler>

    func handleScheduledCallback(eventLoop: some EventLoop) {
        handler.value.pingDue()
    }

    func didCancelScheduledCallback(eventLoop: some EventLoop) {}
}

/// The hub's handle on one WebSocket: hops onto the socket's event loop to write.
final class SocketWriter: EventSink {
    let handler: NIOLoopBound<SocketChannelHandler>
    let loop: any EventLoop

    init(handler: NIOLoopBound<SocketChannelHandler>, eventLoop: any EventLoop) {
        self.handler = handler
        self.loop = eventLoop
    }

    var eventLoop: (any EventLoop)? { loop }

    func send(_ frame: OutgoingFrame) {
        // Always through the loop's queue, even from the loop itself, so that frames keep the
        // order in which they were sent from anywhere.
        let handler = self.handler
        loop.execute { handler.value.write(frame) }
    }

    func enqueueOnLoop(_ frame: OutgoingFrame) -> Bool {
        handler.value.enqueue(frame)
    }

    func flushOnLoop() {
        handler.value.flush()
    }

    func close(_ end: SessionEnd) {
        let handler = self.handler
        loop.execute { handler.value.close(end) }
    }

    func sendPaced(_ frames: [OutgoingFrame]) async throws {
        guard !frames.isEmpty else { return }
        let promise = loop.makePromise(of: Void.self)
        let handler = self.handler
        loop.execute { handler.value.writePaced(frames, promise: promise) }
        try await promise.futureResult.get()
    }
}

/// The head end of a WebSocket's pipeline, below the frame encoder: where complete frames enter,
/// so that they reach the socket without being framed again.
final class RawFrameWriter: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
}
