import NIOCore
import NIOPosix
import Synchronization

/// A loopback TCP proxy for tests: it forwards connections to a target port, and can change the
/// target, cut every connection, black-hole them, or refuse WebSocket upgrades.
///
/// Put it between a client and a ``TestServer`` to simulate a network: the client keeps one URL
/// while servers stop and start behind it on other ports.
///
/// ```swift
/// try await TCPProxy.withProxy { proxy in
///     try await TestServer.withServer { server in
///         proxy.setTarget(port: server.port)
///         // connect a client to proxy.baseURL …
///         proxy.blackHoleAll()   // the connection stays open, but nothing passes any more
///     }
/// }
/// ```
public final class TCPProxy: Sendable {
    /// The port the proxy listens on, on 127.0.0.1.
    public let port: Int
    /// `http://127.0.0.1:PORT`.
    public var baseURL: String { "http://127.0.0.1:\(port)" }

    private let serverChannel: any Channel
    private let state: Mutex<State>

    private struct State {
        var targetPort: Int?
        var refusesWebSocketUpgrades = false
        var connections: [Int: ProxiedConnection] = [:]
        var nextID = 0
        var accepted = 0
        var refusedUpgrades = 0
        var holdsNewConnections = false
        var acceptWaiters: [(count: Int, continuation: CheckedContinuation<Void, Never>)] = []
    }

    private init(serverChannel: any Channel, port: Int, targetPort: Int?) {
        self.serverChannel = serverChannel
        self.port = port
        self.state = Mutex(State(targetPort: targetPort))
    }

    /// Runs a proxy for the length of `body`, then closes it and every connection through it.
    public static func withProxy<Result: Sendable>(targetPort: Int? = nil, _ body: (TCPProxy) async throws -> Result) async throws -> Result {
        let box = ProxyBox()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: false)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard let proxy = box.proxy else { throw ChannelError.ioOnClosedChannel }
                    try channel.pipeline.syncOperations.addHandler(FrontHandler(proxy: proxy))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        let proxy = TCPProxy(
            serverChannel: channel, port: channel.localAddress?.port ?? 0, targetPort: targetPort
        )
        box.set(proxy)
        do {
            let result = try await body(proxy)
            await proxy.close()
            return result
        } catch {
            await proxy.close()
            throw error
        }
    }

    /// Forwards new connections to this port on 127.0.0.1; `nil` refuses them (closes at once).
    /// Open connections keep their target.
    public func setTarget(port: Int?) {
        state.withLock { $0.targetPort = port }
    }

    /// Answers every HTTP request that asks for a WebSocket upgrade with 400 and closes; forwards the rest.
    public func refuseWebSocketUpgrades(_ refuse: Bool = true) {
        state.withLock { $0.refusesWebSocketUpgrades = refuse }
    }

    /// Closes every open connection, both sides, at once.
    public func cutAll() {
        let connections = state.withLock { state in
            defer { state.connections = [:] }
            return Array(state.connections.values)
        }
        for connection in connections { connection.close() }
    }

    /// Stops forwarding on every open connection, in both directions, and keeps them open: what a
    /// vanished NAT mapping or a pulled cable looks like. New connections are forwarded.
    public func blackHoleAll() {
        let connections = state.withLock { Array($0.connections.values) }
        for connection in connections { connection.blackHole() }
    }

    /// Accepts new connections but forwards nothing on them, and keeps them open: a server, or a
    /// middlebox, that takes the connection and never answers. Open connections are not affected.
    public func holdNewConnections(_ hold: Bool = true) {
        state.withLock { $0.holdsNewConnections = hold }
    }

    /// Waits until the proxy has accepted `count` connections in all.
    public func waitUntilAccepted(_ count: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if state.accepted >= count { return true }
                state.acceptWaiters.append((count, continuation))
                return false
            }
            if now { continuation.resume() }
        }
    }

    /// Connections accepted since the proxy started.
    public var acceptedCount: Int { state.withLock { $0.accepted } }
    /// Connections open now.
    public var openCount: Int { state.withLock { $0.connections.count } }
    /// WebSocket upgrades refused since the proxy started.
    public var refusedUpgradeCount: Int { state.withLock { $0.refusedUpgrades } }

    private func close() async {
        try? await serverChannel.close()
        cutAll()
    }

    // MARK: Connections

    fileprivate func register(_ connection: ProxiedConnection) -> (id: Int, target: Int?, refusesUpgrades: Bool, hold: Bool) {
        let (result, waiters) = state.withLock { state in
            state.nextID += 1
            state.accepted += 1
            state.connections[state.nextID] = connection
            let accepted = state.accepted
            let ready = state.acceptWaiters.filter { $0.count <= accepted }.map(\.continuation)
            state.acceptWaiters.removeAll { $0.count <= accepted }
            return ((state.nextID, state.targetPort, state.refusesWebSocketUpgrades, state.holdsNewConnections), ready)
        }
        for waiter in waiters { waiter.resume() }
        return result
    }

    fileprivate func unregister(_ id: Int) {
        _ = state.withLock { $0.connections.removeValue(forKey: id) }
    }

    fileprivate func countRefusedUpgrade() {
        state.withLock { $0.refusedUpgrades += 1 }
    }
}

/// Lets the child channel initializer reach the proxy made after the bind.
private final class ProxyBox: Sendable {
    private let value = Mutex<TCPProxy?>(nil)
    var proxy: TCPProxy? { value.withLock { $0 } }
    func set(_ proxy: TCPProxy) { value.withLock { $0 = proxy } }
}

/// The two channels of one proxied connection.
private final class ProxiedConnection: Sendable {
    private struct State {
        var front: (any Channel)?
        var back: (any Channel)?
        var blackHoled = false
    }
    private let state = Mutex(State())

    init(front: any Channel) {
        state.withLock { $0.front = front }
    }

    func setBack(_ back: any Channel) { state.withLock { $0.back = back } }
    var isBlackHoled: Bool { state.withLock { $0.blackHoled } }
    func blackHole() { state.withLock { $0.blackHoled = true } }

    func close() {
        let (front, back) = state.withLock { ($0.front, $0.back) }
        front?.close(promise: nil)
        back?.close(promise: nil)
    }
}

/// The client's side: sniffs the first request, connects to the target, then relays.
private final class FrontHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let proxy: TCPProxy
    private var connection: ProxiedConnection?
    private var id = 0
    private var refusesUpgrades = false
    private var sniffing = true
    private var pending: ByteBuffer?
    private var back: (any Channel)?

    init(proxy: TCPProxy) {
        self.proxy = proxy
    }

    func channelActive(context: ChannelHandlerContext) {
        let connection = ProxiedConnection(front: context.channel)
        self.connection = connection
        let (id, target, refusesUpgrades, hold) = proxy.register(connection)
        self.id = id
        self.refusesUpgrades = refusesUpgrades
        // Only an HTTP head needs reading before forwarding; other protocols (IRC) flow at once.
        self.sniffing = refusesUpgrades
        if hold {
            connection.blackHole()
            return
        }
        guard let target else {
            context.close(promise: nil)
            return
        }
        let front = context.channel
        let loopBoundSelf = NIOLoopBound(self, eventLoop: context.eventLoop)
        let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        ClientBootstrap(group: context.eventLoop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(BackHandler(front: front, connection: connection))
                }
            }
            .connect(host: "127.0.0.1", port: target)
            .hop(to: context.eventLoop)
            .whenComplete { result in
                switch result {
                case .success(let back): loopBoundSelf.value.connected(back, context: loopBoundContext.value)
                case .failure: loopBoundContext.value.close(promise: nil)
                }
            }
    }

    private func connected(_ back: any Channel, context: ChannelHandlerContext) {
        guard context.channel.isActive else {
            back.close(promise: nil)
            return
        }
        self.back = back
        connection?.setBack(back)
        flushPending()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        if connection?.isBlackHoled == true { return }
        if sniffing {
            pending = pending ?? context.channel.allocator.buffer(capacity: buffer.readableBytes)
            pending!.writeBuffer(&buffer)
            let text = String(buffer: pending!)
            guard let end = text.range(of: "\r\n\r\n") else {
                if pending!.readableBytes > 64 * 1024 { sniffing = false }
                return
            }
            sniffing = false
            let head = text[..<end.lowerBound].lowercased()
            if refusesUpgrades && head.contains("upgrade: websocket") {
                proxy.countRefusedUpgrade()
                pending = nil
                let answer = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 32\r\nConnection: close\r\n\r\nwebsocket upgrades are refused\r\n"
                let channel = context.channel
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: answer))).whenComplete { _ in
                    channel.close(promise: nil)
                }
                back?.close(promise: nil)
                return
            }
            flushPending()
            return
        }
        if let back {
            back.writeAndFlush(buffer, promise: nil)
        } else {
            pending = pending ?? context.channel.allocator.buffer(capacity: buffer.readableBytes)
            pending!.writeBuffer(&buffer)
        }
    }

    private func flushPending() {
        guard !sniffing, let back, let buffer = pending else { return }
        pending = nil
        back.writeAndFlush(buffer, promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        back?.close(promise: nil)
        connection?.close()
        proxy.unregister(id)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// The server's side: relays to the client unless black-holed.
private final class BackHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let front: any Channel
    private let connection: ProxiedConnection

    init(front: any Channel, connection: ProxiedConnection) {
        self.front = front
        self.connection = connection
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if connection.isBlackHoled { return }
        front.writeAndFlush(unwrapInboundIn(data), promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        front.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
