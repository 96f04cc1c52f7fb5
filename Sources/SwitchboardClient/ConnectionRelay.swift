import Logging
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A loopback HTTP `CONNECT` relay that the client's WebSocket connections go through, so that the
/// client can cut one at any time.
///
/// Why it exists: the WebSocket library offers no way to abandon an upgrade that the peer never
/// answers (a hung server, a half-open middlebox): its wait on the upgrade ignores task
/// cancellation, and it exposes no channel to close. Without a way out, such a connection would
/// hang the client and its `disconnect()`. So the client asks the library to use this relay as its
/// HTTP proxy: the library sends `CONNECT host:port`, the relay connects to the server and pipes the
/// bytes, TLS included (end to end; the relay sees ciphertext). Closing the relay's side of a
/// connection ends it for the library on a live event loop, which is always safe. The heartbeat
/// uses the same cut for a connection it finds dead, rather than waiting for a close handshake that
/// cannot complete.
///
/// The relay also gives up an upgrade that the server has not answered within the connect timeout,
/// on its event loop: a timer in a task could find an upgrade unanswered that was answered while the
/// task waited for a thread, and cut a connection that had just opened.
///
/// The relay listens on 127.0.0.1 only, relays only to the client's server, and only for requests
/// that carry its random secret, so that nothing else on the machine can use it.
final class ConnectionRelay: Sendable {
    /// The port on 127.0.0.1.
    let port: Int
    /// The `Proxy-Authorization` value a CONNECT must carry.
    let secret: String
    private let serverChannel: any Channel
    private let connections = Mutex<[ObjectIdentifier: any Channel]>([:])

    private init(serverChannel: any Channel, port: Int, secret: String) {
        self.serverChannel = serverChannel
        self.port = port
        self.secret = secret
    }

    /// Starts a relay that forwards to `host:port` only. `connectTimeout` bounds the connection to
    /// the server and, from the library's `CONNECT`, the server's answer to the upgrade.
    static func start(
        target host: String, port targetPort: Int, connectTimeout: Duration, eventLoopGroup: any EventLoopGroup, logger: Logger
    ) async throws -> ConnectionRelay {
        let secret = "Bearer " + (0..<4).map { _ in String(UInt64.random(in: .min ... .max), radix: 36) }.joined()
        let box = RelayBox()
        let channel = try await ServerBootstrap(group: eventLoopGroup)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard let relay = box.relay else { throw ChannelError.ioOnClosedChannel }
                    try channel.pipeline.syncOperations.addHandler(
                        RelayFrontHandler(
                            relay: relay, allowedHost: host, allowedPort: targetPort,
                            connectTimeout: .nanoseconds(connectTimeout.nanoseconds), logger: logger
                        )
                    )
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        let relay = ConnectionRelay(serverChannel: channel, port: channel.localAddress?.port ?? 0, secret: secret)
        box.set(relay)
        return relay
    }

    /// Resets every relayed connection; the library sees each fail, and its session or upgrade ends.
    ///
    /// A reset rather than a close: the library lets its peer half-close a connection, and a mere
    /// end of input during an upgrade would leave it waiting still.
    func cutAll() {
        let channels = connections.withLock { Array($0.values) }
        for channel in channels { reset(channel) }
    }

    /// Stops listening and cuts what is left.
    func close() async {
        try? await serverChannel.close()
        cutAll()
    }

    fileprivate func track(_ channel: any Channel) {
        connections.withLock { $0[ObjectIdentifier(channel)] = channel }
    }

    fileprivate func untrack(_ channel: any Channel) {
        _ = connections.withLock { $0.removeValue(forKey: ObjectIdentifier(channel)) }
    }
}

/// Closes a connection with a TCP reset, which the library sees as an error wherever it is.
private func reset(_ channel: any Channel) {
    guard let options = channel as? any SocketOptionProvider else {
        channel.close(promise: nil)
        return
    }
    options.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in channel.close(promise: nil) }
}

/// Lets the child channel initializer reach the relay made after the bind.
private final class RelayBox: Sendable {
    private let value = Mutex<ConnectionRelay?>(nil)
    var relay: ConnectionRelay? { value.withLock { $0 } }
    func set(_ relay: ConnectionRelay) { value.withLock { $0 = relay } }
}

/// The library's side of a relayed connection: reads the CONNECT, connects, then pipes.
private final class RelayFrontHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        case readingRequest(ByteBuffer?)
        case connecting(ByteBuffer?)
        /// `spoken`: the library has written since the relay said 200, so its upgrade handler is in place.
        case relaying(any Channel, spoken: Bool)
        /// The server's side closed before the library spoke; the library's side closes when it does.
        case closingAfterNextRead
        case closed
    }

    private let relay: ConnectionRelay
    private let allowedHost: String
    private let allowedPort: Int
    private let connectTimeout: TimeAmount
    private let logger: Logger
    private var state: State = .readingRequest(nil)
    /// From the library's `CONNECT`: resets the connection unless the server has answered the upgrade by then.
    private var upgradeDeadline: Scheduled<Void>?

    init(relay: ConnectionRelay, allowedHost: String, allowedPort: Int, connectTimeout: TimeAmount, logger: Logger) {
        self.relay = relay
        self.allowedHost = allowedHost
        self.allowedPort = allowedPort
        self.connectTimeout = connectTimeout
        self.logger = logger
    }

    func channelActive(context: ChannelHandlerContext) {
        relay.track(context.channel)
        context.fireChannelActive()
    }

    private func upgradeTimedOut(context: ChannelHandlerContext) {
        upgradeDeadline = nil
        switch state {
        case .closed, .closingAfterNextRead:
            return
        case .relaying(_, spoken: false):
            // See userInboundEventTriggered: a reset before the library has spoken is lost on it.
            state = .closingAfterNextRead
        default:
            state = .closed
            reset(context.channel)
        }
        logger.warning("the WebSocket upgrade got no answer in time; cutting it")
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        switch state {
        case .readingRequest(var buffered):
            buffered = buffered ?? context.channel.allocator.buffer(capacity: bytes.readableBytes)
            buffered!.writeBuffer(&bytes)
            guard let end = buffered!.readableBytesView.firstRange(of: Array("\r\n\r\n".utf8)) else {
                if buffered!.readableBytes > 16 * 1024 {
                    refuse(context, "431 Request Header Fields Too Large")
                } else {
                    state = .readingRequest(buffered)
                }
                return
            }
            let headLength = end.upperBound - buffered!.readerIndex
            let head = buffered!.readString(length: headLength) ?? ""
            connect(context, head: head, leftover: buffered!.readableBytes > 0 ? buffered : nil)
        case .connecting(var pending):
            pending = pending ?? context.channel.allocator.buffer(capacity: bytes.readableBytes)
            pending!.writeBuffer(&bytes)
            state = .connecting(pending)
        case .relaying(let back, _):
            state = .relaying(back, spoken: true)
            back.writeAndFlush(bytes, promise: nil)
            // Back-pressure: read no more from the library while the server's side cannot take it.
            if !back.isWritable { context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in } }
        case .closingAfterNextRead:
            state = .closed
            reset(context.channel)
        case .closed:
            break
        }
    }

    private func connect(_ context: ChannelHandlerContext, head: String, leftover: ByteBuffer?) {
        let lines = head.split(separator: "\r\n", omittingEmptySubsequences: true)
        let request = lines.first?.split(separator: " ") ?? []
        guard request.count >= 2, request[0] == "CONNECT" else {
            refuse(context, "405 Method Not Allowed")
            return
        }
        let authorized = lines.dropFirst().contains { line in
            let parts = line.split(separator: ":", maxSplits: 1)
            return parts.count == 2 && parts[0].lowercased() == "proxy-authorization"
                && parts[1].trimmingPrefix(" ") == relay.secret
        }
        guard authorized else {
            refuse(context, "407 Proxy Authentication Required")
            return
        }
        let target = request[1]
        guard let colon = target.lastIndex(of: ":"), let port = Int(target[target.index(after: colon)...]) else {
            refuse(context, "400 Bad Request")
            return
        }
        var host = String(target[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard host.lowercased() == allowedHost.lowercased(), port == allowedPort else {
            refuse(context, "403 Forbidden")
            return
        }
        state = .connecting(leftover)
        let front = context.channel
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let boundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        upgradeDeadline = context.eventLoop.scheduleTask(in: connectTimeout) {
            handler.value.upgradeTimedOut(context: boundContext.value)
        }
        ClientBootstrap(group: context.eventLoop)
            .connectTimeout(connectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RelayBackHandler(front: front))
                }
            }
            .connect(host: host, port: port)
            .hop(to: context.eventLoop)
            .whenComplete { result in
                handler.value.connected(result, context: boundContext.value)
            }
    }

    private func connected(_ result: Result<any Channel, any Error>, context: ChannelHandlerContext) {
        switch result {
        case .failure:
            refuse(context, "502 Bad Gateway")
        case .success(let back):
            guard case .connecting(let pending) = state, context.channel.isActive else {
                back.close(promise: nil)
                return
            }
            state = .relaying(back, spoken: false)
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "HTTP/1.1 200 Connection Established\r\n\r\n")), promise: nil)
            if let pending { back.writeAndFlush(pending, promise: nil) }
        }
    }

    private func refuse(_ context: ChannelHandlerContext, _ status: String) {
        state = .closed
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "HTTP/1.1 \(status)\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")))
            .whenComplete { _ in channel.close(promise: nil) }
    }

    /// The server's side closed.
    ///
    /// When the server had not answered yet, the library is still in its upgrade, where it lets
    /// the peer half-close and would wait forever for an answer after a plain close; so the
    /// relay resets the connection instead. And not at once: the library installs its upgrade
    /// handler a moment after the 200, and a reset in that moment is lost on it, so the relay
    /// waits until the library has written (its upgrade request).
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is UpgradeAnswered {
            upgradeDeadline?.cancel()
            upgradeDeadline = nil
            return
        }
        guard let closed = event as? BackClosed else { return context.fireUserInboundEventTriggered(event) }
        switch state {
        case .relaying(_, spoken: false) where !closed.answered:
            state = .closingAfterNextRead
        case .relaying where !closed.answered:
            state = .closed
            reset(context.channel)
        default:
            state = .closed
            context.close(promise: nil)
        }
    }

    /// The library's side can take more again: read from the server again.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, case .relaying(let back, _) = state {
            back.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        upgradeDeadline?.cancel()
        upgradeDeadline = nil
        if case .relaying(let back, _) = state { back.close(promise: nil) }
        state = .closed
        relay.untrack(context.channel)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// Told to the library's side when the server's side closes.
private struct BackClosed {
    /// Whether the server had sent anything.
    var answered: Bool
}

/// Told to the library's side when the server has sent the whole head of its answer to the upgrade:
/// the library needs nothing more from the network to finish it.
private struct UpgradeAnswered {}

/// Finds the end of an HTTP response head (an empty line) in bytes that come in pieces.
struct ResponseHeadEnd {
    /// How much of "\r\n\r\n" the last bytes were.
    private var matched = 0
    /// Whether the head has ended.
    private(set) var found = false

    /// Reads the next bytes; true once the head has ended.
    mutating func scan(_ bytes: some Sequence<UInt8>) -> Bool {
        guard !found else { return true }
        for byte in bytes {
            switch (matched, byte) {
            case (0, UInt8(ascii: "\r")), (2, UInt8(ascii: "\r")), (1, UInt8(ascii: "\n")): matched += 1
            case (3, UInt8(ascii: "\n")):
                found = true
                return true
            case (_, UInt8(ascii: "\r")): matched = 1
            default: matched = 0
            }
        }
        return false
    }
}

/// The server's side of a relayed connection: pipes back, and closes the library's side when it ends.
private final class RelayBackHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let front: any Channel
    private var answered = false
    private var headEnd = ResponseHeadEnd()

    init(front: any Channel) {
        self.front = front
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        answered = true
        if !headEnd.found, headEnd.scan(bytes.readableBytesView) { front.pipeline.fireUserInboundEventTriggered(UpgradeAnswered()) }
        front.writeAndFlush(bytes, promise: nil)
        // Back-pressure: while the library does not read (the application is slow), the relay reads no more
        // from the server either, so that the server, not this relay, holds what waits, and applies its rule
        // for slow clients.
        if !front.isWritable { context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in } }
    }

    /// The server's side can take more again: read from the library again.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { front.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in } }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        front.pipeline.fireUserInboundEventTriggered(BackClosed(answered: answered))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
