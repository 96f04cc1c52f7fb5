import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// When an HTTP connection has waited too long, by the phase it is in: a new connection gets
/// `header` for its first request's header, a request gets `body` from its header to its end, and
/// a keep-alive connection gets `idle` from a response to the next request's header. While a
/// request is being answered (a long poll, say) nothing expires.
///
/// A pure value: the caller passes the time and acts on the answers.
struct RequestTimeouts: Sendable {
    let header: TimeAmount
    let body: TimeAmount
    let idle: TimeAmount
    /// When the connection is to be closed, unless something happens first; nil while answering.
    private(set) var deadline: NIODeadline?
    /// Whether a request's header has ever arrived.
    private(set) var hasSeenRequest = false
    /// Requests whose header arrived and whose response has not ended.
    private var open = 0
    private var readingBody = false
    private var closesWhenIdle = false

    /// The timeouts of a server's configuration.
    init(_ configuration: ServerConfiguration, now: NIODeadline) {
        self.init(header: .init(configuration.headerTimeout), body: .init(configuration.bodyTimeout), idle: .init(configuration.idleTimeout), now: now)
    }

    init(header: TimeAmount, body: TimeAmount, idle: TimeAmount, now: NIODeadline) {
        self.header = header
        self.body = body
        self.idle = idle
        self.deadline = now + header
    }

    enum Action: Equatable {
        case none
        case close
    }

    /// A request's header arrived.
    mutating func receivedHead(now: NIODeadline) {
        hasSeenRequest = true
        open += 1
        readingBody = true
        deadline = now + body
    }

    /// A request's end arrived: it is being answered, or was already (an early answer, such as a
    /// refusal, goes out before the body is read), and then the connection is idle from now.
    mutating func receivedEnd(now: NIODeadline) -> Action {
        readingBody = false
        guard open == 0 else {
            deadline = nil
            return .none
        }
        if closesWhenIdle { return .close }
        deadline = now + idle
        return .none
    }

    /// A response ended.
    mutating func sentEnd(now: NIODeadline) -> Action {
        open = max(0, open - 1)
        guard open == 0, !readingBody else { return .none }
        if closesWhenIdle { return .close }
        deadline = now + idle
        return .none
    }

    /// The server is shutting down: close now if idle, else after the current response.
    mutating func quiesce() -> Action {
        if open == 0, !readingBody { return .close }
        closesWhenIdle = true
        return .none
    }

    func isExpired(now: NIODeadline) -> Bool {
        deadline.map { now >= $0 } ?? false
    }
}

/// Applies `RequestTimeouts` to a connection, and closes an idle one when the server shuts down.
/// Sits between the HTTP decoder and the upgrade handler; once the connection turns into a
/// WebSocket, which has its own heartbeat, it stops its timer and the upgrade takes it out of the
/// pipeline (`SwitchboardChannel`).
final class ConnectionGuardHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var timeouts: RequestTimeouts
    private var timer: Scheduled<Void>?
    private var timerDeadline: NIODeadline?
    private var upgraded = false

    init(timeouts: RequestTimeouts) {
        self.timeouts = timeouts
    }

    func handlerAdded(context: ChannelHandlerContext) {
        schedule(context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !upgraded else { return context.fireChannelRead(data) }
        switch unwrapInboundIn(data) {
        case .head: timeouts.receivedHead(now: .now())
        case .body: break
        case .end:
            if timeouts.receivedEnd(now: .now()) == .close {
                context.close(promise: nil)
                return
            }
        }
        schedule(context: context)
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard !upgraded else { return context.write(data, promise: promise) }
        switch unwrapOutboundIn(data) {
        case .head(let head) where head.status == .switchingProtocols:
            upgraded = true
            timer?.cancel()
            timer = nil
            context.write(data, promise: promise)
        case .end:
            let action = timeouts.sentEnd(now: .now())
            context.write(data, promise: promise)
            if action == .close {
                context.flush()
                context.close(promise: nil)
            } else {
                schedule(context: context)
            }
        default:
            context.write(data, promise: promise)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if !upgraded, event is ChannelShouldQuiesceEvent, timeouts.quiesce() == .close {
            close(context: context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func schedule(context: ChannelHandlerContext) {
        guard !upgraded, let deadline = timeouts.deadline else { return }
        // One timer at a time: an earlier one finds the later deadline and sets itself again.
        if let timerDeadline, timerDeadline <= deadline, timer != nil { return }
        timer?.cancel()
        timerDeadline = deadline
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let context = NIOLoopBound(context, eventLoop: context.eventLoop)
        timer = context.value.eventLoop.scheduleTask(deadline: deadline) {
            let this = handler.value
            this.timer = nil
            if this.timeouts.isExpired(now: .now()) {
                this.close(context: context.value)
            } else {
                this.schedule(context: context.value)
            }
        }
    }

    private func close(context: ChannelHandlerContext) {
        if !timeouts.hasSeenRequest {
            // Tells the upgrade handler that no request will come, so that it ends quietly.
            context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        }
        context.close(promise: nil)
    }
}

/// The server's open connections: counted per client address, and closed all at once when a
/// shutdown runs out of time.
final class ConnectionRegistry: Sendable {
    private struct State {
        var channels: [ObjectIdentifier: any Channel] = [:]
        var perAddress: [String: Int] = [:]
    }

    private let state = Mutex(State())
    let maxPerAddress: Int

    init(maxPerAddress: Int) {
        self.maxPerAddress = maxPerAddress
    }

    /// Registers a new connection unless its address already holds `maxPerAddress`; it leaves
    /// the registry when it closes.
    func admit(_ channel: any Channel) -> Bool {
        let address = Self.address(of: channel)
        let id = ObjectIdentifier(channel)
        let admitted = state.withLock { state in
            guard state.perAddress[address, default: 0] < maxPerAddress else { return false }
            state.perAddress[address, default: 0] += 1
            state.channels[id] = channel
            return true
        }
        guard admitted else { return false }
        channel.closeFuture.whenComplete { _ in
            self.state.withLock { state in
                state.channels[id] = nil
                let remaining = state.perAddress[address, default: 1] - 1
                state.perAddress[address] = remaining > 0 ? remaining : nil
            }
        }
        return true
    }

    /// Closes every connection.
    func closeAll() {
        for channel in state.withLock({ Array($0.channels.values) }) {
            channel.close(promise: nil)
        }
    }

    /// Open connections.
    var count: Int { state.withLock { $0.channels.count } }

    /// The client's IP address, the key of the per-address cap and rate limits.
    static func address(of channel: any Channel) -> String {
        channel.remoteAddress?.ipAddress ?? "unknown"
    }
}

/// Answers a connection over its address's cap with 429 and closes it.
final class RefuseConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let maxPerAddress: Int

    init(maxPerAddress: Int) {
        self.maxPerAddress = maxPerAddress
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { refuse(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        refuse(context: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    private func refuse(context: ChannelHandlerContext) {
        let body = #"{"error":{"code":"rate_limited","message":"too many connections from your address (at most \#(maxPerAddress)); close some and retry","retryAfterMs":1000}}"#
        let response = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json; charset=utf-8\r\nRetry-After: 1\r\n"
            + "Connection: close\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body
        context.writeAndFlush(NIOAny(ByteBuffer(string: response)), promise: nil)
        context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        context.close(promise: nil)
    }
}
