import Foundation
import NIOCore
import NIOPosix

/// What a socket tells its owner. Every call comes on the socket's event loop.
protocol SocketDelegate: AnyObject {
    /// The upgrade succeeded: the socket can send.
    func socketDidOpen(_ socket: BenchSocket)
    /// One whole text message (a slice of the read buffer: valid for the length of the call).
    func socket(_ socket: BenchSocket, didReceive text: ByteBuffer)
    /// The connection ended; `code` is the close code the server sent, if it sent one.
    func socketDidClose(_ socket: BenchSocket, code: Int?)
}

/// Why a WebSocket could not be opened.
enum SocketFailure: Error, Sendable, CustomStringConvertible, Hashable {
    case connect(String)
    case http(status: Int)
    case malformed
    case closedDuringUpgrade
    case timeout

    var description: String {
        switch self {
        case .connect(let reason): "connect: \(reason)"
        case .http(let status): "HTTP \(status)"
        case .malformed: "malformed upgrade answer"
        case .closedDuringUpgrade: "closed during upgrade"
        case .timeout: "upgrade timeout"
        }
    }

    /// A short label to count failures by.
    var label: String {
        switch self {
        case .connect(let reason):
            if reason.localizedCaseInsensitiveContains("refused") { return "connection refused" }
            if reason.localizedCaseInsensitiveContains("timed out") || reason.localizedCaseInsensitiveContains("timeout") { return "connect timeout" }
            if reason.localizedCaseInsensitiveContains("too many open files") { return "too many open files" }
            if reason.localizedCaseInsensitiveContains("address") { return "address unavailable" }
            return "connect error"
        default: return description
        }
    }
}

/// Where the WebSocket endpoint is.
struct WebSocketEndpoint: Sendable {
    var address: SocketAddress
    var hostHeader: String
    var path: String

    /// `ws://host:port/ws` from the HTTP base URL of a server.
    static func from(baseURL: String) throws -> WebSocketEndpoint {
        guard let url = URL(string: baseURL), let host = url.host else { throw BenchError("cannot read the URL \(baseURL)") }
        let port = url.port ?? (url.scheme == "https" ? 443 : 80)
        guard url.scheme == "http" || url.scheme == "ws" else { throw BenchError("only http:// (plain WebSocket) servers are supported, not \(baseURL)") }
        let address = try SocketAddress.makeAddressResolvingHost(host, port: port)
        let base = url.path.hasSuffix("/") ? String(url.path.dropLast()) : url.path
        return WebSocketEndpoint(address: address, hostHeader: "\(host):\(port)", path: base + "/ws")
    }
}

/// A WebSocket client connection, written for many connections on few threads.
///
/// One channel handler does the HTTP upgrade and the framing, so the pipeline holds nothing
/// else. It lives on its channel's event loop and is never touched from elsewhere. Frames are
/// read without copying when they arrive whole; outgoing text is written once, straight into the
/// buffer that goes to the socket, header and mask included.
final class BenchSocket: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        case connecting
        case upgrading
        case open
        case closing
        case closed
    }

    private var state = State.connecting
    private var delegate: (any SocketDelegate)?
    private var context: ChannelHandlerContext?
    private var cumulation: ByteBuffer?
    private var fragments: ByteBuffer?
    private var maskState: UInt64
    private let request: String
    private var upgradePromise: EventLoopPromise<UInt64>?
    private var upgradeTimeout: Scheduled<Void>?
    private let startedAt: UInt64
    /// The close code received from the server, if any.
    private(set) var closeCode: Int?
    /// Whether the upgrade succeeded (the socket may have closed since).
    private(set) var didOpen = false

    private init(endpoint: WebSocketEndpoint, token: String, delegate: any SocketDelegate, seed: UInt64) {
        self.delegate = delegate
        self.maskState = seed | 1
        self.startedAt = MonotonicClock.nanoseconds()
        var key = [UInt8](repeating: 0, count: 16)
        var generator = SystemRandomNumberGenerator()
        for index in key.indices { key[index] = generator.next() }
        self.request = "GET \(endpoint.path) HTTP/1.1\r\nHost: \(endpoint.hostHeader)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: \(Data(key).base64EncodedString())\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer \(token)\r\n\r\n"
    }

    /// Opens a WebSocket. Call on `eventLoop`; the delegate hears of everything from then on.
    ///
    /// - Returns: the socket, and a future of the time from the connect call to the `101` answer, in nanoseconds.
    static func connect(
        to endpoint: WebSocketEndpoint, token: String, on eventLoop: any EventLoop, delegate: any SocketDelegate,
        timeout: TimeAmount = .seconds(30)
    ) -> (BenchSocket, EventLoopFuture<UInt64>) {
        eventLoop.preconditionInEventLoop()
        let socket = BenchSocket(endpoint: endpoint, token: token, delegate: delegate, seed: UInt64.random(in: 1...UInt64.max))
        let promise = eventLoop.makePromise(of: UInt64.self)
        socket.upgradePromise = promise
        let connected = ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .connect(to: endpoint.address)
        connected.assumeIsolated().whenComplete { result in
            switch result {
            case .success(let channel):
                do {
                    try channel.pipeline.syncOperations.addHandler(socket)
                } catch {
                    socket.failUpgrade(.connect("\(error)"))
                    socket.finish()
                    channel.close(promise: nil)
                }
            case .failure(let error):
                socket.failUpgrade(.connect("\(error)"))
                socket.finish()
            }
        }
        socket.upgradeTimeout = eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            guard socket.upgradePromise != nil else { return }
            socket.failUpgrade(.timeout)
            socket.context?.close(promise: nil)
        }
        return (socket, promise.futureResult)
    }

    var isOpen: Bool { state == .open }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        state = .upgrading
        var buffer = context.channel.allocator.buffer(capacity: request.utf8.count)
        buffer.writeString(request)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failUpgrade(.closedDuringUpgrade)
        finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        if var pending = cumulation {
            cumulation = nil
            pending.writeBuffer(&buffer)
            buffer = pending
        }
        if state == .upgrading {
            guard readUpgradeAnswer(&buffer) else {
                if state == .upgrading { cumulation = buffer }
                return
            }
        }
        while state == .open || state == .closing {
            guard let frame = Self.parseFrame(&buffer) else { break }
            handle(frame)
        }
        if buffer.readableBytes > 0 {
            buffer.discardReadBytes()
            cumulation = buffer
        }
    }

    // MARK: Upgrade

    /// Reads the HTTP answer to the upgrade; true once it is whole and the socket is open.
    private func readUpgradeAnswer(_ buffer: inout ByteBuffer) -> Bool {
        let end: Int? = buffer.withUnsafeReadableBytes { bytes in
            guard bytes.count >= 4 else { return nil }
            for index in 3..<bytes.count
            where bytes[index] == 10 && bytes[index - 1] == 13 && bytes[index - 2] == 10 && bytes[index - 3] == 13 {
                return index + 1
            }
            return nil
        }
        guard let end else {
            if buffer.readableBytes > 16_384 {
                failUpgrade(.malformed)
                context?.close(promise: nil)
            }
            return false
        }
        let status: Int? = buffer.withUnsafeReadableBytes { bytes in
            // "HTTP/1.1 101 Switching Protocols"
            guard bytes.count >= 12 else { return nil }
            var value = 0
            for index in 9..<12 {
                let digit = Int(bytes[index]) - 48
                guard (0...9).contains(digit) else { return nil }
                value = value * 10 + digit
            }
            return value
        }
        buffer.moveReaderIndex(forwardBy: end)
        guard status == 101 else {
            failUpgrade(status.map { .http(status: $0) } ?? .malformed)
            state = .closing
            context?.close(promise: nil)
            return false
        }
        state = .open
        didOpen = true
        let elapsed = MonotonicClock.nanoseconds() &- startedAt
        if let promise = upgradePromise {
            upgradePromise = nil
            upgradeTimeout?.cancel()
            upgradeTimeout = nil
            promise.succeed(elapsed)
        }
        delegate?.socketDidOpen(self)
        return true
    }

    private func failUpgrade(_ failure: SocketFailure) {
        guard let promise = upgradePromise else { return }
        upgradePromise = nil
        upgradeTimeout?.cancel()
        upgradeTimeout = nil
        promise.fail(failure)
    }

    private func finish() {
        guard state != .closed else { return }
        state = .closed
        context = nil
        let delegate = self.delegate
        self.delegate = nil
        delegate?.socketDidClose(self, code: closeCode)
    }

    // MARK: Frames

    private struct Frame {
        var fin: Bool
        var opcode: UInt8
        var payload: ByteBuffer
    }

    /// Takes one whole frame off the front of `buffer`; nil when it has not all arrived.
    private static func parseFrame(_ buffer: inout ByteBuffer) -> Frame? {
        let reader = buffer.readerIndex
        guard let first = buffer.getInteger(at: reader, as: UInt8.self), let second = buffer.getInteger(at: reader + 1, as: UInt8.self) else {
            return nil
        }
        var headerLength = 2
        var length = Int(second & 0x7F)
        if length == 126 {
            guard let extended = buffer.getInteger(at: reader + 2, as: UInt16.self) else { return nil }
            length = Int(extended)
            headerLength = 4
        } else if length == 127 {
            guard let extended = buffer.getInteger(at: reader + 2, as: UInt64.self) else { return nil }
            length = Int(truncatingIfNeeded: extended)
            headerLength = 10
        }
        let masked = second & 0x80 != 0
        var maskKey: UInt32 = 0
        if masked {
            guard let key = buffer.getInteger(at: reader + headerLength, as: UInt32.self) else { return nil }
            maskKey = key
            headerLength += 4
        }
        guard length >= 0, buffer.readableBytes >= headerLength + length else { return nil }
        var payload = buffer.getSlice(at: reader + headerLength, length: length)!
        buffer.moveReaderIndex(forwardBy: headerLength + length)
        if masked {
            // Servers do not mask; unmask a copy if one does.
            var copy = ByteBuffer()
            copy.reserveCapacity(length)
            copy.writeBuffer(&payload)
            Self.mask(&copy, from: copy.readerIndex, count: length, key: maskKey)
            payload = copy
        }
        return Frame(fin: first & 0x80 != 0, opcode: first & 0x0F, payload: payload)
    }

    private func handle(_ frame: Frame) {
        switch frame.opcode {
        case 0x1:
            if frame.fin {
                delegate?.socket(self, didReceive: frame.payload)
            } else {
                var payload = frame.payload
                var fragments = ByteBuffer()
                fragments.writeBuffer(&payload)
                self.fragments = fragments
            }
        case 0x0:
            guard var fragments else { return }
            self.fragments = nil
            var payload = frame.payload
            fragments.writeBuffer(&payload)
            if frame.fin {
                delegate?.socket(self, didReceive: fragments)
            } else {
                self.fragments = fragments
            }
        case 0x8:
            closeCode = frame.payload.getInteger(at: frame.payload.readerIndex, as: UInt16.self).map(Int.init)
            if state == .open {
                var payload = frame.payload
                writeFrame(opcode: 0x8, payload: &payload)
            }
            state = .closing
            context?.close(promise: nil)
        case 0x9:
            var payload = frame.payload
            writeFrame(opcode: 0xA, payload: &payload)
        default:
            break
        }
    }

    // MARK: Sending

    /// Sends one text frame whose payload `body` writes. `estimatedSize` sizes the buffer.
    @discardableResult
    func sendText(estimatedSize: Int, _ body: (inout ByteBuffer) -> Void) -> Bool {
        guard state == .open, let context else { return false }
        var buffer = context.channel.allocator.buffer(capacity: estimatedSize + 14)
        // Room for the longest header in front; the payload goes straight after it.
        buffer.moveWriterIndex(forwardBy: 14)
        buffer.moveReaderIndex(forwardBy: 14)
        body(&buffer)
        frame(&buffer, opcode: 0x1)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        return true
    }

    /// Sends a close frame; the channel closes when the server answers, or after a second.
    func close(code: UInt16 = 1000) {
        guard state == .open, let context else { return }
        var payload = context.channel.allocator.buffer(capacity: 2)
        payload.writeInteger(code)
        writeFrame(opcode: 0x8, payload: &payload)
        state = .closing
        let channel = context.channel
        context.eventLoop.scheduleTask(in: .seconds(1)) { channel.close(promise: nil) }
    }

    /// Ends the TCP connection at once, without a close frame.
    func abort() {
        context?.close(promise: nil)
    }

    private func writeFrame(opcode: UInt8, payload: inout ByteBuffer) {
        guard let context else { return }
        var buffer = context.channel.allocator.buffer(capacity: payload.readableBytes + 14)
        buffer.moveWriterIndex(forwardBy: 14)
        buffer.moveReaderIndex(forwardBy: 14)
        buffer.writeBuffer(&payload)
        frame(&buffer, opcode: opcode)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    /// Puts a masked frame header in front of the payload held in `buffer`, and masks the payload.
    private func frame(_ buffer: inout ByteBuffer, opcode: UInt8) {
        let payloadStart = buffer.readerIndex
        let length = buffer.readableBytes
        let headerLength = (length < 126 ? 2 : length <= 0xFFFF ? 4 : 10) + 4
        let start = payloadStart - headerLength
        buffer.setInteger(0x80 | opcode, at: start)
        if length < 126 {
            buffer.setInteger(UInt8(0x80 | length), at: start + 1)
        } else if length <= 0xFFFF {
            buffer.setInteger(UInt8(0x80 | 126), at: start + 1)
            buffer.setInteger(UInt16(length), at: start + 2)
        } else {
            buffer.setInteger(UInt8(0x80 | 127), at: start + 1)
            buffer.setInteger(UInt64(length), at: start + 2)
        }
        // A fresh mask for every frame, as RFC 6455 asks; xorshift is plenty for that.
        maskState ^= maskState << 13
        maskState ^= maskState >> 7
        maskState ^= maskState << 17
        let key = UInt32(truncatingIfNeeded: maskState)
        buffer.setInteger(key, at: payloadStart - 4)
        Self.mask(&buffer, from: payloadStart, count: length, key: key)
        buffer.moveReaderIndex(to: start)
    }

    /// XORs `count` bytes at `from` with the 4-byte key (in network order).
    private static func mask(_ buffer: inout ByteBuffer, from: Int, count: Int, key: UInt32) {
        let offset = from - buffer.readerIndex
        buffer.withUnsafeMutableReadableBytes { bytes in
            let k0 = UInt8(truncatingIfNeeded: key >> 24), k1 = UInt8(truncatingIfNeeded: key >> 16)
            let k2 = UInt8(truncatingIfNeeded: key >> 8), k3 = UInt8(truncatingIfNeeded: key)
            let wide = UInt64(k0) | UInt64(k1) << 8 | UInt64(k2) << 16 | UInt64(k3) << 24
            let key64 = wide | wide << 32
            var index = 0
            // Eight bytes at a time (the key repeats every four, so every eight too), then the rest.
            while index + 8 <= count {
                let pointer = bytes.baseAddress! + offset + index
                let word = pointer.loadUnaligned(as: UInt64.self)
                pointer.storeBytes(of: word ^ key64.littleEndian, as: UInt64.self)
                index += 8
            }
            while index < count {
                let keyByte: UInt8
                switch index & 3 {
                case 0: keyByte = k0
                case 1: keyByte = k1
                case 2: keyByte = k2
                default: keyByte = k3
                }
                bytes[offset + index] ^= keyByte
                index += 1
            }
        }
    }
}

/// The monotonic clock every figure is measured with (the one NIO schedules by).
enum MonotonicClock {
    @inline(__always)
    static func nanoseconds() -> UInt64 {
        NIODeadline.now().uptimeNanoseconds
    }
}
