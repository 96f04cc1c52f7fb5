import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Foundation
import Logging
import NIOCore
import NIOHTTP1

/// Answers a WebSocket upgrade with a bad token by HTTP 401, as the contract says.
///
/// A refused upgrade is answered 400 by the upgrade machinery itself. So this handler, placed
/// between the HTTP decoder and the upgrade handler, checks the token of every upgrade request
/// first; when it is refused, it takes the `Upgrade` header off the request, which then reaches
/// the router as a plain GET and gets the router's 401 with the contract's error body.
final class UpgradeGateHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart

    private let authenticate: @Sendable (String) async -> Bool
    private var held: [HTTPServerRequestPart] = []
    private var checking = false

    init(authenticate: @escaping @Sendable (String) async -> Bool) {
        self.authenticate = authenticate
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
        let promise = context.eventLoop.makePromise(of: Bool.self)
        let authenticate = self.authenticate
        promise.completeWithTask {
            guard let token else { return false }
            return await authenticate(token)
        }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let context = NIOLoopBound(context, eventLoop: context.eventLoop)
        promise.futureResult.whenSuccess { accepted in
            handler.value.release(context: context.value, accepted: accepted)
        }
    }

    private func release(context: ChannelHandlerContext, accepted: Bool) {
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

/// Hummingbird's HTTP/1 + WebSocket channel with an `UpgradeGateHandler` in front of the upgrade,
/// the cap of connections per client address, and the timeouts of `RequestTimeouts`.
struct GatedWebSocketChannel: ServerChildChannel {
    let base: HTTP1WebSocketUpgradeChannel
    let authenticate: @Sendable (String) async -> Bool
    let connections: ConnectionRegistry
    let timeouts: @Sendable () -> RequestTimeouts

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<HTTP1WebSocketUpgradeChannel.Value> {
        // Each connection keeps its last receive buffer for the next read. NIO starts it at
        // 2 KB; 512 bytes hold an upgrade request and many frames, and it grows when reads fill
        // it. Mostly idle connections then keep 1.5 KB less each.
        try? channel.syncOptions?.setOption(
            ChannelOptions.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65536))
        let admitted = connections.admit(channel)
        if !admitted {
            try? channel.pipeline.syncOperations.addHandler(RefuseConnectionHandler(maxPerAddress: connections.maxPerAddress))
        }
        let value = base.setup(channel: channel, logger: logger)
        let authenticate = self.authenticate
        let timeouts = self.timeouts
        return value.flatMapThrowing { value in
            guard admitted else { return value }
            let decoder = try channel.pipeline.syncOperations.context(handlerType: ByteToMessageHandler<HTTPRequestDecoder>.self)
            try channel.pipeline.syncOperations.addHandler(ConnectionGuardHandler(timeouts: timeouts()), position: .after(decoder.handler))
            try channel.pipeline.syncOperations.addHandler(UpgradeGateHandler(authenticate: authenticate), position: .after(decoder.handler))
            return value
        }
    }

    func handle(value: HTTP1WebSocketUpgradeChannel.Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}
