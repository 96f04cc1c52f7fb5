import Hummingbird
import HummingbirdCore
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket
import SwitchboardProtocol

/// Authenticates a WebSocket upgrade before the upgrade handler sees it, and answers a bad token
/// by HTTP 401, as the contract says.
///
/// A refused upgrade is answered 400 by the upgrade machinery itself. So this handler, placed
/// between the HTTP decoder and the upgrade handler, checks the token of every upgrade request
/// first; when it is refused, it takes the `Upgrade` header off the request, which then reaches
/// the router as a plain GET and gets the router's 401 with the contract's error body. When it
/// is accepted, the caller goes into `admitted`, where the upgrade finds it.
final class UpgradeGateHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart

    private let authenticate: @Sendable (String) async -> Identity?
    private let admitted: NIOLoopBoundBox<Identity?>
    private var held: [HTTPServerRequestPart] = []
    private var checking = false

    init(authenticate: @escaping @Sendable (String) async -> Identity?, admitted: NIOLoopBoundBox<Identity?>) {
        self.authenticate = authenticate
        self.admitted = admitted
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if checking {
            held.append(part)
            return
        }
        guard case .head(let head) = part, head.headers["upgrade"].contains(where: { $0.lowercased() == "websocket" }) else {
            context.fireChannelRead(data)
            return
        }
        checking = true
        held = [part]
        let token = Self.token(in: head)
        let promise = context.eventLoop.makePromise(of: Identity?.self)
        let authenticate = self.authenticate
        promise.completeWithTask {
            guard let token else { return nil }
            return await authenticate(token)
        }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let context = NIOLoopBound(context, eventLoop: context.eventLoop)
        promise.futureResult.whenSuccess { identity in
            handler.value.release(context: context.value, identity: identity)
        }
    }

    private func release(context: ChannelHandlerContext, identity: Identity?) {
        admitted.value = identity
        let accepted = identity != nil
        let parts = held
        held = []
        checking = false
        for var part in parts {
            if !accepted, case .head(var head) = part {
                head.headers.remove(name: "upgrade")
                head.headers.replaceOrAdd(name: "connection", value: "close")
                part = .head(head)
            }
            context.fireChannelRead(wrapInboundOut(part))
        }
        if accepted {
            // The connection turns into a WebSocket: what comes next is not HTTP.
            context.pipeline.syncOperations.removeHandler(self, promise: nil)
        }
        context.read()
    }

    private static func token(in head: HTTPRequestHead) -> String? {
        if let header = head.headers["authorization"].first {
            let parts = header.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" { return String(parts[1]).trimmingSpaces() }
        }
        let query = head.uri.split(separator: "?", maxSplits: 1).dropFirst().first ?? ""
        for pair in query.split(separator: "&") where pair.hasPrefix("token=") {
            return String(pair.dropFirst("token=".count)).removingPercentEncoding
        }
        return nil
    }
}

/// HTTP/1 with the WebSocket upgrade of `/ws` (NIO's upgrader), behind the cap of connections
/// per client address, the timeouts of `RequestTimeouts` and an `UpgradeGateHandler`.
///
/// An upgraded connection is served entirely by its pipeline (`SocketChannelHandler`): `handle`
/// returns at once for it, so that no task, and no task's stack, is kept per idle WebSocket.
/// Plain HTTP goes to Hummingbird's router as with `HTTP1Channel`.
struct SwitchboardChannel: ServerChildChannel, HTTPChannelHandler {
    /// How a connection's first request turned out.
    enum Upgrade: Sendable {
        /// A WebSocket, served by its pipeline.
        case webSocket
        case notUpgraded(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        /// An upgrade the upgrader refused (not `/ws`, or malformed): answered 400.
        case refused(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
    }

    struct Value: ServerChildChannelValue {
        let upgrade: EventLoopFuture<Upgrade>
        let channel: any Channel
    }

    /// The receive buffers of a connection: see `setup`.
    static let receiveBuffers = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 128, maximum: 65536)

    /// The paths served as WebSocket.
    static let webSocketPaths: Set<Substring> = ["/ws", "/ws/"]

    let responder: HTTPChannelHandler.Responder
    let authenticate: @Sendable (String) async -> Identity?
    /// Makes the handler that serves an upgraded connection of this caller.
    let makeWebSocketHandler: @Sendable (Identity) -> SocketChannelHandler
    let maxFrameBytes: Int
    let connections: ConnectionRegistry
    let timeouts: @Sendable () -> RequestTimeouts

    init(
        responder: @escaping HTTPChannelHandler.Responder, authenticate: @escaping @Sendable (String) async -> Identity?,
        makeWebSocketHandler: @escaping @Sendable (Identity) -> SocketChannelHandler, maxFrameBytes: Int,
        connections: ConnectionRegistry, timeouts: @escaping @Sendable () -> RequestTimeouts
    ) {
        self.responder = Self.redirectingUpgrades(to: responder)
        self.authenticate = authenticate
        self.makeWebSocketHandler = makeWebSocketHandler
        self.maxFrameBytes = maxFrameBytes
        self.connections = connections
        self.timeouts = timeouts
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        // NIO's pool of receive buffers keeps, for the connection's lifetime, up to one buffer per
        // read of a readable event (`maxMessagesPerRead`). With one read per event it keeps only
        // the first buffer, which is reused for the reads that fit in it; larger reads get
        // buffers that are freed after them. NIO starts it at 2 KB; an idle WebSocket receives
        // only pongs, so it starts small, and the adaptive allocator sizes the next ones as reads
        // fill them (an upgrade request takes a few reads, a large frame a few more).
        try? channel.syncOptions?.setOption(ChannelOptions.maxMessagesPerRead, value: 1)
        try? channel.syncOptions?.setOption(ChannelOptions.recvAllocator, value: Self.receiveBuffers)
        let admitted = connections.admit(channel)
        if !admitted {
            try? channel.pipeline.syncOperations.addHandler(RefuseConnectionHandler(maxPerAddress: connections.maxPerAddress))
        }
        return channel.eventLoop.makeCompletedFuture {
            let caller = NIOLoopBoundBox<Identity?>(nil, eventLoop: channel.eventLoop)
            let attempted = NIOLoopBoundBox(false, eventLoop: channel.eventLoop)
            let makeWebSocketHandler = self.makeWebSocketHandler
            let upgrader = NIOTypedWebSocketServerUpgrader<Upgrade>(
                maxFrameSize: maxFrameBytes,
                // `SocketChannelHandler` answers the frame decoder's errors itself.
                enableAutomaticErrorHandling: false,
                shouldUpgrade: { channel, head in
                    attempted.value = true
                    let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]
                    let accepted = caller.value != nil && Self.webSocketPaths.contains(path)
                    return channel.eventLoop.makeSucceededFuture(accepted ? HTTPHeaders() : nil)
                },
                upgradePipelineHandler: { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        guard let identity = caller.value else { throw ChannelError.inappropriateOperationForState }
                        caller.value = nil
                        // NIO has taken out the HTTP codec and the upgrade handler; the request
                        // timeouts have no job left either (the WebSocket has its heartbeat).
                        let operations = channel.pipeline.syncOperations
                        operations.removeHandler(context: try operations.context(handlerType: ConnectionGuardHandler.self), promise: nil)
                        try channel.pipeline.syncOperations.addHandler(makeWebSocketHandler(identity))
                        return .webSocket
                    }
                }
            )
            let upgrades = NIOTypedHTTPServerUpgradeConfiguration(
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                        try channel.pipeline.syncOperations.addHandler(HTTPConnectionStateHandler(idleTimeout: nil, logger: logger))
                        let http = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                            wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                        return attempted.value ? .refused(http) : .notUpgraded(http)
                    }
                }
            )
            var configuration = NIOUpgradableHTTPServerPipelineConfiguration<Upgrade>(upgradeConfiguration: upgrades)
            configuration.enablePipelining = false  // NIOAsyncChannel serves one request at a time
            configuration.enableErrorHandling = false  // Hummingbird's `handleHTTP` answers parse errors
            configuration.enableResponseHeaderValidation = false  // HTTPTypes validates already
            let upgrade = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(configuration: configuration)
            if admitted {
                let decoder = try channel.pipeline.syncOperations.context(handlerType: ByteToMessageHandler<HTTPRequestDecoder>.self)
                try channel.pipeline.syncOperations.addHandler(ConnectionGuardHandler(timeouts: timeouts()), position: .after(decoder.handler))
                try channel.pipeline.syncOperations.addHandler(
                    UpgradeGateHandler(authenticate: authenticate, admitted: caller), position: .after(decoder.handler))
            }
            return Value(upgrade: upgrade, channel: channel)
        }
    }

    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.upgrade.get() {
            case .webSocket:
                // The pipeline serves it from here on; this task ends.
                return
            case .notUpgraded(let http):
                await handleHTTP(asyncChannel: http, logger: logger)
            case .refused(let http):
                let body = ByteBuffer(bytes: Self.refusedUpgradeBody)
                try await http.executeThenClose { _, outbound in
                    try await outbound.write(contentsOf: [
                        .head(HTTPResponse(status: .badRequest, headerFields: [
                            .connection: "close", .contentType: "application/json", .contentLength: "\(body.readableBytes)",
                        ])),
                        .body(body), .end(nil),
                    ])
                }
            }
        } catch {
            logger.debug("connection ended before its first request was served", metadata: ["switchboard.error": "\(error)"])
        }
    }

    /// The answer to a refused upgrade, with the body every HTTP error has.
    private static let refusedUpgradeBody: [UInt8] = Array(
        (try? Wire.encodeString(ErrorResponse(error: ProtocolError(
            .invalid, "a WebSocket upgrade is served at /ws only, with Sec-WebSocket-Version 13 and a Sec-WebSocket-Key"))))?.utf8 ?? "".utf8)

    /// NIO upgrades only a connection's first request. A later one that asks for an upgrade is
    /// redirected to the same address with the connection closed, so that the client upgrades
    /// on a new one (as Hummingbird's WebSocket channel does).
    private static func redirectingUpgrades(to responder: @escaping HTTPChannelHandler.Responder) -> HTTPChannelHandler.Responder {
        { request, writer, channel in
            guard request.headers[.upgrade]?.lowercased() == "websocket" else {
                return try await responder(request, writer, channel)
            }
            let location = request.uri.query.map { "\(request.uri.path)?\($0)" } ?? request.uri.path
            try await writer.writeResponse(HTTPResponse(status: .temporaryRedirect, headerFields: [.connection: "close", .location: location]))
            throw ChannelError.outputClosed
        }
    }
}
