import Foundation
import NIOCore
import NIOPosix
import Synchronization
import SwitchboardTesting

/// A plain TCP client that speaks HTTP/1.1 and WebSocket by hand, for what a well-behaved client
/// library will not do: answer an upgrade with a bad token, never answer pings, never read.
final class RawClient: Sendable {
    /// Bytes received and not yet parsed, and whether the connection ended.
    struct Inbox: Sendable {
        var bytes: [UInt8] = []
        var closed = false
    }

    private struct State {
        var inbox = Inbox()
        var version = 0
        var nextWaiter = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
    }

    /// A WebSocket frame from the server.
    struct Frame: Sendable {
        var opcode: UInt8
        var payload: [UInt8]
        var text: String { String(decoding: payload, as: UTF8.self) }
        /// The close code of a close frame.
        var closeCode: Int? {
            guard opcode == 0x8, payload.count >= 2 else { return nil }
            return Int(payload[0]) << 8 | Int(payload[1])
        }
    }

    /// An HTTP response head and body.
    struct Response: Sendable {
        var status: Int
        var head: String
        var body: [UInt8]
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    private let state = Mutex(State())
    private let channel = Mutex<(any Channel)?>(nil)

    private init() {}

    /// Opens a TCP connection to the server; `receiveBufferSize` shrinks the kernel's receive buffer,
    /// and `staysOpenAfterServerEnds` keeps the client's side open when the server ends its own (NIO
    /// would close it, which a server waiting for the client's answer takes for one).
    static func connect(port: Int, receiveBufferSize: Int? = nil, staysOpenAfterServerEnds: Bool = false) async throws -> RawClient {
        let client = RawClient()
        var bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(ChannelOptions.allowRemoteHalfClosure, value: staysOpenAfterServerEnds)
        if let receiveBufferSize {
            bootstrap = bootstrap.channelOption(ChannelOptions.socketOption(.so_rcvbuf), value: receiveBufferSize)
        }
        let channel = try await bootstrap
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RawClientHandler(client: client))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        client.channel.withLock { $0 = channel }
        return client
    }

    /// Opens a connection and asks for a WebSocket upgrade of `path` with a bearer token (when given).
    /// - Returns: the client and the server's answer; after a 101 the client speaks WebSocket.
    static func upgrade(
        port: Int, path: String = "/ws", token: String? = nil, receiveBufferSize: Int? = nil, staysOpenAfterServerEnds: Bool = false
    ) async throws -> (RawClient, Response) {
        let client = try await connect(port: port, receiveBufferSize: receiveBufferSize, staysOpenAfterServerEnds: staysOpenAfterServerEnds)
        var request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        request += "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        if let token { request += "Authorization: Bearer \(token)\r\n" }
        request += "\r\n"
        try await client.write(Array(request.utf8))
        let response = try await client.readResponse()
        return (client, response)
    }

    // MARK: Writing

    func write(_ bytes: [UInt8]) async throws {
        guard let channel = channel.withLock({ $0 }) else { throw TestFailure("raw client not connected") }
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
    }

    /// Sends a masked text frame, as a client must.
    func sendText(_ text: String) async throws {
        try await write(Self.clientFrame(opcode: 0x1, payload: Array(text.utf8)))
    }

    static func clientFrame(opcode: UInt8, payload: [UInt8]) -> [UInt8] {
        var frame: [UInt8] = [0x80 | opcode]
        let count = payload.count
        if count < 126 {
            frame.append(0x80 | UInt8(count))
        } else if count <= 0xFFFF {
            frame.append(0x80 | 126)
            frame += [UInt8(count >> 8), UInt8(count & 0xFF)]
        } else {
            frame.append(0x80 | 127)
            frame += (0..<8).reversed().map { UInt8((UInt64(count) >> (8 * UInt64($0))) & 0xFF) }
        }
        let mask: [UInt8] = (0..<4).map { _ in UInt8.random(in: 0...255) }
        frame += mask
        frame += payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
        return frame
    }

    /// Stops (or resumes) reading from the socket, so that the server's writes pile up.
    func setReading(_ reading: Bool) async throws {
        guard let channel = channel.withLock({ $0 }) else { throw TestFailure("raw client not connected") }
        try await channel.setOption(ChannelOptions.autoRead, value: reading).get()
        if reading { channel.read() }
    }

    func close() async {
        guard let channel = channel.withLock({ $0 }) else { return }
        try? await channel.close()
    }

    // MARK: Reading

    /// Reads an HTTP response: head, and a body of `Content-Length` bytes.
    func readResponse(timeout: Duration = .seconds(10)) async throws -> Response {
        try await wait(timeout: timeout) { (inbox: inout Inbox) -> Result<Response, TestFailure>? in
            guard let end = Self.find([13, 10, 13, 10], in: inbox.bytes) else {
                if inbox.closed { return .failure(TestFailure("connection closed before an HTTP answer")) }
                return nil
            }
            let head = String(decoding: inbox.bytes[..<end], as: UTF8.self)
            let status = head.split(separator: " ", maxSplits: 2).dropFirst().first.flatMap { Int($0) } ?? 0
            var length = 0
            for line in head.split(separator: "\r\n") {
                let parts = line.split(separator: ":", maxSplits: 1)
                if parts.count == 2, parts[0].lowercased() == "content-length" {
                    length = Int(parts[1].trimmingCharacters(in: .whitespaces)) ?? 0
                }
            }
            let bodyStart = end + 4
            if status == 101 { length = 0 }
            guard inbox.bytes.count >= bodyStart + length else {
                return inbox.closed ? .failure(TestFailure("connection closed inside an HTTP answer")) : nil
            }
            let body = Array(inbox.bytes[bodyStart..<(bodyStart + length)])
            inbox.bytes.removeFirst(bodyStart + length)
            return .success(Response(status: status, head: head, body: body))
        }.get()
    }

    /// The next WebSocket frame, or nil when the connection ended first.
    func nextFrame(timeout: Duration = .seconds(10)) async throws -> Frame? {
        try await wait(timeout: timeout) { (inbox: inout Inbox) -> Frame?? in
            if let frame = Self.parseFrame(&inbox.bytes) { return .some(frame) }
            return inbox.closed ? .some(nil) : nil
        }
    }

    /// The next text frame whose JSON `ref` is `ref`; frames before it are dropped.
    func frame(withRef ref: String, timeout: Duration = .seconds(10)) async throws -> Frame {
        try await framesThrough(ref: ref, timeout: timeout).last!
    }

    /// The frames up to and including the next text frame whose JSON `ref` is `ref`.
    func framesThrough(ref: String, timeout: Duration = .seconds(10)) async throws -> [Frame] {
        try await withTimeout(timeout) {
            var frames: [Frame] = []
            while true {
                guard let frame = try await self.nextFrame(timeout: timeout) else {
                    throw TestFailure("the connection closed while waiting for ref \(ref)")
                }
                frames.append(frame)
                if frame.opcode == 0x1, frame.text.contains("\"ref\":\"\(ref)\"") { return frames }
            }
        }
    }

    /// Waits until the connection ends, reading and dropping what arrives.
    /// - Returns: the frames seen on the way, without their payloads when `keepPayloads` is false.
    func waitUntilClosed(timeout: Duration, keepPayloads: Bool = false) async throws -> [Frame] {
        try await withTimeout(timeout) {
            var frames: [Frame] = []
            while let frame = try await self.nextFrame(timeout: timeout) {
                frames.append(keepPayloads || frame.opcode != 0x1 ? frame : Frame(opcode: frame.opcode, payload: []))
            }
            return frames
        }
    }

    /// Reads up to and including the next text frame whose JSON `ref` is `ref`, and counts the
    /// frames of each opcode on the way without keeping them: for tens of thousands of frames,
    /// which `framesThrough` (one array shift per frame) would take minutes to go through.
    func countFramesThrough(ref: String, timeout: Duration = .seconds(30)) async throws -> [UInt8: Int] {
        try await withTimeout(timeout) {
            var counts: [UInt8: Int] = [:]
            var bytes: [UInt8] = []
            while true {
                let arrived: [UInt8]? = try await self.wait(timeout: timeout) { inbox -> [UInt8]?? in
                    if !inbox.bytes.isEmpty {
                        defer { inbox.bytes = [] }
                        return .some(inbox.bytes)
                    }
                    return inbox.closed ? .some(nil) : nil
                }
                guard let arrived else { throw TestFailure("the connection closed while waiting for ref \(ref)") }
                bytes += arrived
                var offset = 0
                while let (frame, end) = Self.parseFrame(bytes, at: offset) {
                    offset = end
                    counts[frame.opcode, default: 0] += 1
                    if frame.opcode == 0x1, frame.text.contains("\"ref\":\"\(ref)\"") {
                        // What came after it is for the next reader.
                        let rest = Array(bytes[end...])
                        self.state.withLock { $0.inbox.bytes = rest + $0.inbox.bytes }
                        return counts
                    }
                }
                bytes.removeFirst(offset)
            }
        }
    }

    /// Whether the connection has ended.
    var isClosed: Bool { state.withLock { $0.inbox.closed } }

    static func parseFrame(_ bytes: inout [UInt8]) -> Frame? {
        guard let (frame, end) = parseFrame(bytes, at: 0) else { return nil }
        bytes.removeFirst(end)
        return frame
    }

    /// The frame starting at `start`, and where the next one starts; nil when it is not all there.
    static func parseFrame(_ bytes: [UInt8], at start: Int) -> (Frame, Int)? {
        let available = bytes.count - start
        guard available >= 2 else { return nil }
        let opcode = bytes[start] & 0x0F
        let masked = bytes[start + 1] & 0x80 != 0
        var length = Int(bytes[start + 1] & 0x7F)
        var offset = 2
        if length == 126 {
            guard available >= 4 else { return nil }
            length = Int(bytes[start + 2]) << 8 | Int(bytes[start + 3])
            offset = 4
        } else if length == 127 {
            guard available >= 10 else { return nil }
            length = (2..<10).reduce(0) { $0 << 8 | Int(bytes[start + $1]) }
            offset = 10
        }
        var mask: [UInt8] = []
        if masked {
            guard available >= offset + 4 else { return nil }
            mask = Array(bytes[(start + offset)..<(start + offset + 4)])
            offset += 4
        }
        guard available >= offset + length else { return nil }
        var payload = Array(bytes[(start + offset)..<(start + offset + length)])
        if masked { payload = payload.enumerated().map { $0.element ^ mask[$0.offset % 4] } }
        return (Frame(opcode: opcode, payload: payload), start + offset + length)
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for start in 0...(haystack.count - needle.count) where haystack[start..<(start + needle.count)].elementsEqual(needle) {
            return start
        }
        return nil
    }

    // MARK: Inbox

    fileprivate func received(_ bytes: ByteBuffer) {
        changed { $0.bytes += Array(buffer: bytes) }
    }

    fileprivate func ended() {
        changed { $0.closed = true }
    }

    private func changed(_ update: (inout Inbox) -> Void) {
        let waiters = state.withLock { state in
            update(&state.inbox)
            state.version += 1
            defer { state.waiters = [:] }
            return state.waiters
        }
        for waiter in waiters.values { waiter.resume() }
    }

    /// Waits until `check` finds what it needs in the inbox (it may consume bytes).
    private func wait<Value: Sendable>(timeout: Duration, _ check: @escaping @Sendable (inout Inbox) -> Value?) async throws -> Value {
        try await withTimeout(timeout) {
            while true {
                let (value, version, id) = self.state.withLock { state -> (Value?, Int, Int) in
                    state.nextWaiter += 1
                    return (check(&state.inbox), state.version, state.nextWaiter)
                }
                if let value { return value }
                try Task.checkCancellation()
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                        let now = self.state.withLock { state -> Bool in
                            if state.version != version || Task.isCancelled { return true }
                            state.waiters[id] = continuation
                            return false
                        }
                        if now { continuation.resume() }
                    }
                } onCancel: {
                    self.state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
                }
            }
        }
    }
}

private final class RawClientHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let client: RawClient

    init(client: RawClient) { self.client = client }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        client.received(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        client.ended()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        client.ended()
        context.close(promise: nil)
    }
}
