import Logging
import NIOCore
import NIOPosix
import Testing

@testable import SwitchboardClient

@Suite("The connection relay's upgrade deadline", .timeLimit(.minutes(1)))
struct ConnectionRelayTests {
    @Test("the end of a response head is found across pieces, after stray line ends")
    func headEnd() {
        var scanner = ResponseHeadEnd()
        let early = scanner.scan(Array("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n".utf8))
        let almost = scanner.scan(Array("\r".utf8))
        let ended = scanner.scan(Array("\n".utf8))
        #expect(!early && !almost && ended && scanner.found)

        var afterStrayReturn = ResponseHeadEnd()
        let strayEnded = afterStrayReturn.scan(Array("HTTP/1.1 101 X\r\r\n\r\n".utf8))
        var withoutEmptyLine = ResponseHeadEnd()
        let bareNewLines = withoutEmptyLine.scan(Array("HTTP/1.1 101 X\r\nA: b\r\n\nC: d\r\n".utf8))
        #expect(strayEnded && !bareNewLines)
    }

    // The scripted server speaks as soon as it accepts, so that from the CONNECT on, everything the
    // deadline measures happens on event loops, not in this test's task (slow while the suite runs).

    @Test("an upgrade whose answer stops inside its head is cut at the deadline")
    func unfinishedHeadIsCut() async throws {
        try await Self.withRelay(timeout: .seconds(1), answer: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: web") { relay, server in
            try await RelayedConnection.with(through: relay, to: server) { connection in
                // Nothing more comes: the relay resets the connection (without it, the time limit fails the test).
                #expect(await connection.read(until: "never sent") == false)
            }
        }
    }

    @Test("an upgrade answered in time stays open past the deadline, however late the library takes it")
    func answeredUpgradeStays() async throws {
        // The server answers at once, then speaks again well after the deadline: that second line only
        // arrives if the relay left the connection open.
        try await Self.withRelay(
            timeout: .seconds(1), answer: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            later: (.seconds(3), "still here")
        ) { relay, server in
            try await RelayedConnection.with(through: relay, to: server) { connection in
                #expect(await connection.read(until: "still here"))
            }
        }
    }

    /// A server that says `answer` to each connection it accepts, and `later` after a delay, and a relay to it.
    static func withRelay(
        timeout: Duration, answer: String, later: (Duration, String)? = nil, _ body: (ConnectionRelay, Int) async throws -> Void
    ) async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ScriptedAnswer(answer: answer, later: later))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        let port = try #require(server.localAddress?.port)
        let relay = try await ConnectionRelay.start(
            target: "127.0.0.1", port: port, connectTimeout: timeout, eventLoopGroup: MultiThreadedEventLoopGroup.singleton,
            logger: Logger(label: "relay-test")
        )
        do {
            try await body(relay, port)
        } catch {
            await relay.close()
            try? await server.close()
            throw error
        }
        await relay.close()
        try? await server.close()
    }
}

/// Says a fixed text to each connection it accepts, and optionally more after a delay.
private final class ScriptedAnswer: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let answer: String
    let later: (Duration, String)?

    init(answer: String, later: (Duration, String)?) {
        self.answer = answer
        self.later = later
    }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: answer)), promise: nil)
        if let (delay, text) = later {
            let channel = context.channel
            context.eventLoop.scheduleTask(in: .nanoseconds(delay.nanoseconds)) {
                channel.writeAndFlush(ByteBuffer(string: text), promise: nil)
            }
        }
        context.fireChannelActive()
    }
}

/// A connection made as the WebSocket library makes one: CONNECT to the relay, then an upgrade request.
private struct RelayedConnection {
    private var inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private var unread = ""

    static func with(through relay: ConnectionRelay, to port: Int, _ body: (inout RelayedConnection) async throws -> Void) async throws {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: relay.port) { channel in
                channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
            }
        try await channel.executeThenClose { inbound, outbound in
            var connection = RelayedConnection(inbound: inbound.makeAsyncIterator())
            try await outbound.write(ByteBuffer(string: "CONNECT 127.0.0.1:\(port) HTTP/1.1\r\nProxy-Authorization: \(relay.secret)\r\n\r\n"))
            #expect(await connection.read(until: "200 Connection Established\r\n\r\n"))
            try await outbound.write(ByteBuffer(string: "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\r\n"))
            try await body(&connection)
        }
    }

    /// Reads until `text` has come (true) or the connection ends (false).
    mutating func read(until text: String) async -> Bool {
        while true {
            if let range = unread.range(of: text) {
                unread = String(unread[range.upperBound...])
                return true
            }
            do {
                guard let buffer = try await inbound.next() else { return false }
                unread += String(buffer: buffer)
            } catch {
                return false  // a reset
            }
        }
    }
}
