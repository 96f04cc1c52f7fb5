// Micro-benchmarks of the server's hot paths, with ordo-one/benchmark.
//
// Built only when asked for, so that the normal build stays lean:
//
//     SWITCHBOARD_MICROBENCHMARKS=1 swift package --disable-sandbox benchmark
//
// They reach the server's internal types (the hub, the rate limiter) through `@testable import`,
// for which Package.swift compiles SwitchboardServer with testing enabled in that mode only.

import Benchmark
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOPosix
import NIOWebSocket
import Synchronization
import SwitchboardProtocol
@testable import SwitchboardServer

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .cpuTotal, .mallocCountTotal, .instructions, .throughput],
        warmupIterations: 10,
        maxDuration: .seconds(3),
        maxIterations: 1_000_000
    )

    // MARK: The wire codec

    let clientFrame = Array(#"{"type":"message","roomId":"r_0123456789abcdef","ref":"42","data":{"content":"12.34.5678901234.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","clientId":"bench-12-34"}}"#.utf8)
    Benchmark("Envelope decode: a client's message frame (IncomingFrame)", configuration: .init(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(IncomingFrame(bytes: clientFrame))
        }
    }

    let clientText = String(decoding: clientFrame, as: UTF8.self)
    Benchmark("Envelope decode: a client's message frame (MessageFrameScanner)", configuration: .init(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(MessageFrameScanner.scan(clientText, limits: Limits()))
        }
    }

    let message = Message(
        id: "m_0123456789abcdef", roomId: "r_0123456789abcdef", seq: 123_456, userId: "u_0123456789abcdef",
        content: String(repeating: "x", count: 100), createdAt: 1_764_230_400_000, clientId: "bench-12-34")
    Benchmark("Envelope encode: a message event (Wire.encode)", configuration: .init(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try Wire.encode(Envelope(type: .message, roomId: message.roomId, data: message, timestamp: 1_764_230_400_000, userId: message.userId)))
        }
    }

    Benchmark("Envelope encode: a message event and its ack (JSONWriter)", configuration: .init(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations {
            let json = OutgoingFrame.messageJSON(message)
            blackHole(OutgoingFrame.messageEvent(message, messageJSON: json, now: 1_764_230_400_000))
            blackHole(OutgoingFrame.messageAck(message, messageJSON: json, duplicate: false, ref: "42", now: 1_764_230_400_000))
        }
    }

    let serverFrame = try! Wire.encode(Envelope(type: .message, roomId: message.roomId, data: message, timestamp: 1_764_230_400_000, userId: message.userId))
    Benchmark("Envelope decode: a server's message event (ServerEvent)", configuration: .init(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try ServerEvent(bytes: serverFrame))
        }
    }

    // MARK: Fan-out

    // Set up once; every sample publishes the next message of the same room.
    let countingRoom = FanoutRoom(subscribers: 100) { _ in CountingSink() }
    Benchmark("Fan-out: Hub.publish of one message to 100 subscribers (counting sinks)") { benchmark in
        for _ in benchmark.scaledIterations {
            countingRoom.publish()
        }
    }

    let pipelines = EmbeddedPipelines(count: 100)
    let pipelineRoom = FanoutRoom(subscribers: 100) { index in pipelines.sinks[index] }
    pipelines.drain()
    Benchmark("Fan-out: Hub.publish of one message to 100 WebSocket pipelines (EmbeddedChannel)") { benchmark in
        for _ in benchmark.scaledIterations {
            pipelineRoom.publish()
            pipelines.drain()
        }
    }

    Benchmark("Fan-out: 100 EventLoop.execute hops from another thread (what SocketWriter.send costs off the loop)") { benchmark in
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            for _ in 0..<99 { loop.execute {} }
            try! loop.submit {}.wait()
        }
    }

    // MARK: Rate limiter

    let kilo = Benchmark.Configuration(scalingFactor: .kilo)
    let oneUser = RateLimiter(perSecond: 1_000_000_000, burst: 1_000_000_000)
    Benchmark("Rate limiter: RateLimiter.take, one user (x1000)", configuration: kilo) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(oneUser.take("u_0123456789abcdef"))
        }
    }

    let manyUsers = RateLimiter(perSecond: 10, burst: 30)
    let users = (0..<10_000).map { "u_\($0)_0123456789" }
    for user in users { _ = manyUsers.take(user) }
    let turn = Mutex(0)
    Benchmark("Rate limiter: RateLimiter.take, 10,000 users in turn (x1000)", configuration: kilo) { benchmark in
        var index = turn.withLock { $0 }
        for _ in benchmark.scaledIterations {
            blackHole(manyUsers.take(users[index % users.count]))
            index += 1
        }
        turn.withLock { $0 = index }
    }

    Benchmark("Rate limiter: TokenBucket.take (x1000)", configuration: kilo) { benchmark in
        var bucket = TokenBucket(rate: 10, burst: 30, now: .zero)
        var now = Duration.zero
        for _ in benchmark.scaledIterations {
            now += .milliseconds(100)
            blackHole(bucket.take(now: now))
        }
    }
}

/// A hub with one room of `subscribers` live connections.
final class FanoutRoom: Sendable {
    let hub: Hub
    let roomId = "r_0123456789abcdef"
    private let seq = Mutex(0)

    init(subscribers: Int, sink: (Int) -> any EventSink) {
        var configuration = ServerConfiguration()
        configuration.port = 0
        hub = Hub(configuration: configuration, metrics: ServerMetrics())
        let users = (0..<subscribers).map { User(id: "u_\($0)", username: "user\($0)", displayName: "User \($0)", isBot: false) }
        let room = Room(id: roomId, name: "bench", kind: .group, isPublic: false, createdAt: 0, lastSeq: 0, members: users.map(\.id))
        hub.roomCreated(room, now: 0)
        for (index, user) in users.enumerated() {
            let id = hub.register(user: user, tokenId: "t_\(index)", tokenExpiresAt: nil, sink: sink(index), rooms: [room], now: 0)
            _ = hub.beginJoin(id, roomId: roomId, now: 0)
            _ = hub.completeJoin(id, roomId: roomId, ack: JoinAck(room: room, lastSeq: 0, replayed: 0, truncated: false), ref: nil, now: 0)
        }
    }

    func publish() {
        let seq = self.seq.withLock { value in
            value += 1
            return value
        }
        let message = Message(
            id: "m_\(seq)", roomId: roomId, seq: seq, userId: "u_0", content: String(repeating: "x", count: 100),
            createdAt: 1_764_230_400_000, clientId: "bench-\(seq)")
        let event = OutgoingFrame.messageEvent(message, messageJSON: OutgoingFrame.messageJSON(message), now: 1_764_230_400_000)
        hub.publish([Hub.Publication(message: message, event: event, ack: nil)], now: 1_764_230_400_000)
    }
}

/// A sink that only counts.
final class CountingSink: EventSink {
    private let count = Mutex(0)
    func send(_ frame: OutgoingFrame) { count.withLock { $0 += 1 } }
    func close(_ end: SessionEnd) {}
}

/// Embedded channels with the server's socket handler, and the sinks that write to them.
final class EmbeddedPipelines: @unchecked Sendable {
    let channels: [EmbeddedChannel]
    let sinks: [EmbeddedSink]

    init(count: Int) {
        channels = (0..<count).map { _ in EmbeddedChannel() }
        sinks = channels.map { try! EmbeddedSink(channel: $0) }
    }

    /// Runs the flushes the handlers scheduled and takes what they wrote.
    func drain() {
        for channel in channels {
            channel.embeddedEventLoop.run()
            while let frame = try! channel.readOutbound(as: ByteBuffer.self) { blackHole(frame) }
        }
    }
}

/// The server's own socket handler and writer, on an embedded channel with the frame codec and
/// the raw frame writer at its head, as `SocketWriter.install` sets them up.
final class EmbeddedSink: EventSink {
    let writer: SocketWriter

    init(channel: EmbeddedChannel) throws {
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(WebSocketFrameDecoder()))
        try channel.pipeline.syncOperations.addHandler(WebSocketFrameEncoder())
        // The session never opens: frames are written through the handler alone, which puts the
        // raw frame writer at the head of the pipeline when it is added.
        let handler = SocketChannelHandler(configuration: ServerConfiguration(), logger: Logger(label: "bench")) { _ in
            try await Task.sleep(for: .seconds(86_400))
            throw CancellationError()
        }
        try channel.pipeline.syncOperations.addHandler(handler)
        writer = SocketWriter(handler: NIOLoopBound(handler, eventLoop: channel.eventLoop), eventLoop: channel.eventLoop)
    }

    var eventLoop: (any EventLoop)? { writer.eventLoop }
    func enqueueOnLoop(_ frame: OutgoingFrame) -> Bool { writer.enqueueOnLoop(frame) }
    func flushOnLoop() { writer.flushOnLoop() }
    func send(_ frame: OutgoingFrame) { writer.send(frame) }
    func close(_ end: SessionEnd) {}
}
