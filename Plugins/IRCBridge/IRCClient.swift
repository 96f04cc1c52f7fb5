import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Synchronization

/// Where an IRC network is and how to reach it.
public struct IRCServer: Sendable, Hashable {
    /// Host name or address.
    public var host: String
    /// Port. Default 6697 (TLS).
    public var port: Int
    /// TLS on or off; nil means on for port 6697 and off otherwise. Default nil.
    public var tls: Bool?
    /// Check the server's certificate (chain and host name). Default true; turn off only for a test server.
    public var verifyCertificate: Bool
    /// A PEM file of extra certificate authorities to trust (a private or test CA). Default none.
    public var trustedCertificateFile: String?
    /// The name the certificate must carry, when it is not `host` (say, connecting to an address). Default `host`.
    public var serverName: String?

    /// A server; every field but the host has a default.
    public init(host: String, port: Int = 6697, tls: Bool? = nil, verifyCertificate: Bool = true, trustedCertificateFile: String? = nil, serverName: String? = nil) {
        self.host = host
        self.port = port
        self.tls = tls
        self.verifyCertificate = verifyCertificate
        self.trustedCertificateFile = trustedCertificateFile
        self.serverName = serverName
    }

    /// Whether the connection uses TLS.
    public var usesTLS: Bool { tls ?? (port == 6697) }
}

/// An IRC connection's settings.
public struct IRCClientConfiguration: Sendable {
    /// The server.
    public var server: IRCServer
    /// Nick, registration and channels.
    public var session: IRCSessionConfiguration
    /// Pacing of PRIVMSG lines. Default: a burst of 5, then one a second.
    public var floodControl: FloodControl
    /// Waits between reconnects. Default 1 s doubling up to 60 s, ±25 %.
    public var backoff: ReconnectBackoff
    /// The most lines waiting per channel; senders wait when it is reached (nothing is dropped,
    /// but the lines of a channel that refuses us). Default 10 000.
    public var queueLimit: Int
    /// How long to wait for the TCP connection. Default 10 s.
    public var connectTimeout: Duration
    /// How often timeouts and keep-alive are checked. Default 1 s.
    public var tickInterval: Duration

    /// A configuration; every field but the server has a default.
    public init(
        server: IRCServer,
        session: IRCSessionConfiguration = IRCSessionConfiguration(),
        floodControl: FloodControl = FloodControl(),
        backoff: ReconnectBackoff = ReconnectBackoff(),
        queueLimit: Int = 10_000,
        connectTimeout: Duration = .seconds(10),
        tickInterval: Duration = .seconds(1)
    ) {
        self.server = server
        self.session = session
        self.floodControl = floodControl
        self.backoff = backoff
        self.queueLimit = max(1, queueLimit)
        self.connectTimeout = connectTimeout
        self.tickInterval = tickInterval
    }
}

/// What an `IRCClient` tells its owner.
public enum IRCClientEvent: Sendable, Hashable {
    /// Registered on the server as `nick`.
    case registered(nick: String)
    /// In `channel` now (after every reconnect too).
    case joined(String)
    /// The connection ended; a reconnect follows.
    case disconnected(reason: String)
    /// Something happened on IRC (our own echoed lines are not reported).
    case irc(IRCEvent)
}

/// A snapshot of a connection's health, for metrics.
public struct IRCClientStatus: Sendable, Hashable {
    /// The connection's state.
    public enum State: String, Sendable, Hashable {
        case disconnected, connecting, registered
    }

    /// The connection's state.
    public var state: State = .disconnected
    /// Our nick, once registered.
    public var nick: String?
    /// Lines waiting to be sent, all channels together.
    public var queued = 0
    /// Lines sent and not yet confirmed (echoed back with `echo-message`, else answered by a PING after them).
    public var unconfirmed = 0
    /// The last PING round trip.
    public var lag: Duration?
    /// The wait flood control put on the last line.
    public var floodDelay: Duration = .zero
    /// Connections made so far.
    public var connections = 0
    /// Lines relayed to IRC so far.
    public var sent = 0
}

/// One connection to an IRC network, kept up: it reconnects with backoff, re-registers, rejoins,
/// and sends queued lines in order per channel under flood control, across reconnects.
///
/// A `Service`: run it in a `ServiceGroup` or a task group; it ends on graceful shutdown or cancellation.
///
/// ```swift
/// let client = IRCClient(configuration: configuration, logger: logger) { event in … }
/// try await client.send(["<ann> hello"], to: "#chat")
/// ```
public final class IRCClient: Service, Sendable {
    /// The settings.
    public let configuration: IRCClientConfiguration
    private let logger: Logger
    private let eventLoopGroup: any EventLoopGroup
    private let onEvent: @Sendable (IRCClientEvent) async -> Void
    private let state: Mutex<Shared>

    /// A client; nothing happens until `run()`.
    public init(
        configuration: IRCClientConfiguration,
        logger: Logger,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        onEvent: @escaping @Sendable (IRCClientEvent) async -> Void
    ) {
        self.configuration = configuration
        self.logger = logger
        self.eventLoopGroup = eventLoopGroup
        self.onEvent = onEvent
        self.state = Mutex(Shared(session: IRCSession(configuration.session)))
    }

    /// The connection's health now.
    public var status: IRCClientStatus {
        state.withLock { shared in
            var status = shared.status
            status.nick = shared.session.phase == .registered ? shared.session.nick : nil
            status.lag = shared.session.lag
            status.queued = shared.queues.values.reduce(0) { $0 + $1.count }
            status.unconfirmed = shared.unconfirmed.values.reduce(0) { $0 + $1.count }
            return status
        }
    }

    /// The bytes of text one PRIVMSG (or ACTION) to `channel` may carry so that the line, as other
    /// users receive it with our full source, fits 512 bytes. Assumes a nick a little longer than
    /// the configured one, so that a reconnect on an alternate nick still fits.
    public func textBudget(for channel: String, action: Bool = false) -> Int {
        state.withLock { shared in
            let nickLength = max(shared.session.nick.utf8.count, configuration.session.nick.utf8.count + 3)
            let budget = IRCTextSplitter.textBudget(
                nick: String(repeating: "n", count: nickLength),
                userAndHost: shared.session.userAndHost,
                target: channel
            )
            return budget - (action ? 9 : 0)  // "\u{01}ACTION " and "\u{01}"
        }
    }

    /// Queues lines for `channel`, sent in this order after the ones queued before, now or after
    /// the next (re)connect and join. Waits while the channel's queue is full; drops the lines
    /// (and logs it) while the server refuses to let us join the channel, and nothing else.
    public func send(_ lines: [String], to channel: String, action: Bool = false) async throws {
        let key = IRCCase.fold(channel)
        defer { state.withLock { $0.ring() } }
        lines: for (index, line) in lines.enumerated() {
            let message = IRCMessage(command: "PRIVMSG", parameters: [channel, action ? CTCP(command: "ACTION", argument: line).text : line])
            while true {
                switch state.withLock({ $0.append(message, to: key, limit: configuration.queueLimit) }) {
                case .queued:
                    continue lines
                case .full:
                    try await Task.sleep(for: .milliseconds(20))  // back-pressure while the queue is full
                case .cannotJoin:
                    logger.info("dropping lines for an IRC channel we cannot join", metadata: ["irc.channel": "\(channel)", "irc.lines": "\(lines.count - index)"])
                    return
                }
            }
        }
    }

    /// Says QUIT with `reason` and stops: `run()` returns once the server has closed the
    /// connection (or at once when not connected), without reconnecting.
    public func quit(_ reason: String) async {
        let outbound = state.withLock { shared in
            shared.quitting = true
            return shared.outbound
        }
        guard let outbound else { return }
        try? await outbound.write(ByteBuffer(string: IRCMessage(command: "QUIT", parameters: [reason]).line + "\r\n"))
    }

    /// Connects and keeps connecting until graceful shutdown, cancellation or `quit`.
    public func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                var failures = 0
                while !Task.isCancelled, !self.state.withLock({ $0.quitting }) {
                    var reason = "the server closed the connection"
                    do {
                        reason = try await self.connectOnce()
                    } catch {
                        if Task.isCancelled { break }
                        reason = "\(error)"
                    }
                    let (registered, quitting) = self.state.withLock { ($0.endConnection(), $0.quitting) }
                    if quitting { break }
                    failures = registered ? 1 : failures + 1
                    let delay = self.configuration.backoff.delay(afterFailures: failures, random: Double.random(in: 0..<1))
                    self.logger.info(
                        "IRC connection ended; reconnecting",
                        metadata: ["irc.server": "\(self.configuration.server.host):\(self.configuration.server.port)", "irc.reason": "\(reason)", "irc.delay": "\(delay)"]
                    )
                    await self.onEvent(.disconnected(reason: reason))
                    try await Task.sleep(for: delay)
                }
            }
        } catch is CancellationError {
            // Shutdown.
        }
        _ = state.withLock { $0.endConnection() }
    }

    // MARK: - One connection

    private func makeTLSContext() throws -> NIOSSLContext? {
        guard configuration.server.usesTLS else { return nil }
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = configuration.server.verifyCertificate ? .fullVerification : .none
        if let file = configuration.server.trustedCertificateFile {
            tls.additionalTrustRoots = [.file(file)]
        }
        do {
            return try NIOSSLContext(configuration: tls)
        } catch {
            throw IRCConnectionError(code: .tlsConfiguration, message: "cannot set up TLS: check the trusted certificate file", cause: error)
        }
    }

    /// One connection from connect to close; returns why it ended.
    private func connectOnce() async throws -> String {
        state.withLock { $0.status.state = .connecting }
        let server = configuration.server
        let tlsContext = try makeTLSContext()
        let serverName = server.serverName ?? (Self.isAddress(server.host) ? nil : server.host)
        let channel = try await ClientBootstrap(group: eventLoopGroup)
            .connectTimeout(.nanoseconds(Int64(configuration.connectTimeout.components.seconds * 1_000_000_000)))
            .connect(host: server.host, port: server.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tlsContext {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tlsContext, serverHostname: serverName))
                    }
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(IRCLineDecoder()))
                    return try NIOAsyncChannel<String, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            let clock = ContinuousClock()
            let origin = clock.now
            let now: @Sendable () -> Duration = { clock.now - origin }
            let (doorbell, ring) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
            let start = state.withLock { shared -> [IRCSession.Action]? in
                // `quit` while the connection was being made had nothing to say QUIT on.
                guard !shared.quitting else { return nil }
                shared.status.connections += 1
                shared.doorbell = ring
                shared.outbound = outbound
                return shared.session.start(at: now())
            }
            guard let start else { return "quit while connecting" }
            if let reason = try await perform(start, outbound) { return reason }
            return try await withThrowingTaskGroup(of: String.self) { group in
                group.addTask {
                    for try await line in inbound {
                        let message: IRCMessage
                        do {
                            message = try IRCMessage(parsing: line)
                        } catch {
                            self.logger.debug("ignoring a line that is not IRC", metadata: ["irc.error": "\(error)"])
                            continue
                        }
                        let actions = self.state.withLock { shared in
                            if message.command == "PONG", let token = message.parameters.last { shared.confirmMarker(token) }
                            return shared.session.receive(message, at: now())
                        }
                        if let reason = try await self.perform(actions, outbound) { return reason }
                    }
                    return "the server closed the connection"
                }
                group.addTask {
                    while true {
                        try await Task.sleep(for: self.configuration.tickInterval)
                        let actions = self.state.withLock { $0.session.tick(at: now()) }
                        if let reason = try await self.perform(actions, outbound) { return reason }
                    }
                }
                group.addTask {
                    try await self.writeQueuedLines(doorbell: doorbell, outbound: outbound, now: now)
                    return "stopped"
                }
                let reason = try await group.next() ?? "stopped"
                group.cancelAll()
                return reason
            }
        }
    }

    /// Carries out a session's actions; returns a reason when the connection must close.
    private func perform(_ actions: [IRCSession.Action], _ outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>) async throws -> String? {
        for action in actions {
            switch action {
            case .send(let message):
                try await outbound.write(ByteBuffer(string: message.line + "\r\n"))
            case .reply(let message):
                state.withLock { shared in
                    shared.queueReply(message)
                    shared.ring()
                }
            case .registered(let nick):
                state.withLock { $0.status.state = .registered }
                logger.info("registered on IRC", metadata: ["irc.server": "\(configuration.server.host)", "irc.nick": "\(nick)"])
                await onEvent(.registered(nick: nick))
            case .joined(let channel):
                state.withLock { $0.ring() }
                await onEvent(.joined(channel))
            case .left(let channel):
                logger.info("out of an IRC channel", metadata: ["irc.channel": "\(channel)"])
            case .cannotJoin(let channel):
                let dropped = state.withLock { $0.queues.removeValue(forKey: IRCCase.fold(channel))?.count ?? 0 }
                if dropped > 0 {
                    logger.info("dropping lines for an IRC channel we cannot join", metadata: ["irc.channel": "\(channel)", "irc.lines": "\(dropped)"])
                }
            case .event(.message(let message)) where message.isEcho:
                if let channel = message.channel { state.withLock { $0.confirm(IRCCase.fold(channel)) } }
            case .event(.refused(let channel, let reason)):
                logger.warning("IRC server refused a line", metadata: ["irc.channel": "\(channel)", "irc.reason": "\(reason)"])
                state.withLock { $0.confirm(IRCCase.fold(channel)) }
            case .event(let event):
                await onEvent(.irc(event))
            case .warning(let text):
                logger.warning("\(text)", metadata: ["irc.server": "\(configuration.server.host)"])
            case .close(let reason):
                return reason
            }
        }
        return nil
    }

    /// The sender: the next line of the next channel in turn, paced by the token bucket.
    private func writeQueuedLines(doorbell: AsyncStream<Void>, outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>, now: @Sendable () -> Duration) async throws {
        var bucket = TokenBucket(configuration.floodControl)
        for await _ in doorbell {
            while let (key, message) = state.withLock({ $0.nextToSend() }) {
                let delay = bucket.reserve(at: now())
                state.withLock { $0.status.floodDelay = delay }
                if delay > .zero { try await Task.sleep(for: delay) }
                // Unconfirmed before it is written: its echo may be read before the write returns.
                // Without echo-message, a PING after lines confirms them (the server answers in
                // order): after a burst, and every few lines of a long one. (A CTCP answer,
                // without a channel, needs no confirming.)
                let marker = key.flatMap { key in state.withLock { $0.commitSent(key) } }
                try await outbound.write(ByteBuffer(string: message.line + "\r\n"))
                if let marker { try await outbound.write(ByteBuffer(string: marker.line + "\r\n")) }
            }
            if let marker = state.withLock({ $0.nextMarker() }) {
                try await outbound.write(ByteBuffer(string: marker.line + "\r\n"))
            }
        }
    }

    private static func isAddress(_ host: String) -> Bool {
        host.contains(":") || host.split(separator: ".").count == 4 && host.allSatisfy { $0.isNumber || $0 == "." }
    }
}

/// What the tasks of a connection share, behind the client's lock.
private struct Shared: Sendable {
    var session: IRCSession
    var status = IRCClientStatus()
    /// Lines waiting, per folded channel name.
    var queues: [String: LineQueue] = [:]
    /// Lines written and waiting for their echo (with `echo-message`) or for the PONG of a PING
    /// written after them (without), per folded channel name.
    var unconfirmed: [String: LineQueue] = [:]
    /// Without echo-message: lines written since the last marker PING, per channel, and the
    /// markers written and not yet answered, oldest first.
    var sentSinceMarker: [String: Int] = [:]
    var markers: [(token: String, counts: [String: Int])] = []
    var markerNumber = 0
    /// Channels in the order of their first line, for round-robin.
    var channelOrder: [String] = []
    var nextChannel = 0
    var doorbell: AsyncStream<Void>.Continuation?
    /// The connection's writer, while there is one (for `quit`).
    var outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>?
    /// `quit` was called: no reconnecting.
    var quitting = false
    /// CTCP answers waiting for flood control, at most `replyLimit`.
    var replies = LineQueue()
    static let replyLimit = 8

    enum Appended { case queued, full, cannotJoin }

    mutating func append(_ message: IRCMessage, to key: String, limit: Int) -> Appended {
        if session.cannotJoin(key) { return .cannotJoin }
        if queues[key, default: LineQueue()].count >= limit { return .full }
        if !channelOrder.contains(key) { channelOrder.append(key) }
        queues[key, default: LineQueue()].append(message)
        return .queued
    }

    func ring() { doorbell?.yield() }

    /// Queues a CTCP answer, or drops it when `replyLimit` wait already (someone asks too much).
    mutating func queueReply(_ message: IRCMessage) {
        if replies.count < Self.replyLimit { replies.append(message) }
    }

    /// The next line to write: a CTCP answer first (taken off its queue, with no channel), else
    /// the next line of the channels in turn, only channels we are in, without removing it.
    mutating func nextToSend() -> (String?, IRCMessage)? {
        guard session.phase == .registered else { return nil }
        if let reply = replies.removeFirst() { return (nil, reply) }
        guard !channelOrder.isEmpty else { return nil }
        for offset in 0..<channelOrder.count {
            let index = (nextChannel + offset) % channelOrder.count
            let key = channelOrder[index]
            if let message = queues[key]?.first, session.isJoined(key) {
                nextChannel = index + 1
                return (key, message)
            }
        }
        return nil
    }

    /// The line from `nextToSend` is about to be written: it waits for confirmation now. Returns a
    /// marker PING to write after it when many lines went unmarked.
    mutating func commitSent(_ key: String) -> IRCMessage? {
        guard let message = queues[key]?.removeFirst() else { return nil }
        status.sent += 1
        unconfirmed[key, default: LineQueue()].append(message)
        guard !session.capabilities.contains("echo-message") else { return nil }
        sentSinceMarker[key, default: 0] += 1
        return nextMarker(after: 16)
    }

    /// The PING that confirms the lines written since the last one, if at least `count` were.
    mutating func nextMarker(after count: Int = 1) -> IRCMessage? {
        guard sentSinceMarker.values.reduce(0, +) >= count else { return nil }
        markerNumber += 1
        let token = "switchboard-sent-\(markerNumber)"
        markers.append((token, sentSinceMarker))
        sentSinceMarker = [:]
        return IRCMessage(command: "PING", parameters: [token])
    }

    /// A PONG: when it answers a marker, the lines written before it (and before older markers) arrived.
    mutating func confirmMarker(_ token: String) {
        guard let index = markers.firstIndex(where: { $0.token == token }) else { return }
        for marker in markers[...index] {
            for (key, count) in marker.counts {
                for _ in 0..<count { _ = unconfirmed[key]?.removeFirst() }
            }
        }
        markers.removeFirst(index + 1)
    }

    /// The server echoed (or refused) the oldest unconfirmed line of a channel.
    mutating func confirm(_ key: String) {
        // Without echo-message, only markers confirm (a refused line is inside a marker's count).
        guard session.capabilities.contains("echo-message") else { return }
        _ = unconfirmed[key]?.removeFirst()
    }

    /// The connection is gone: unconfirmed lines go back in front of their queues, to be sent
    /// again first. Returns whether the connection had registered.
    mutating func endConnection() -> Bool {
        for (key, lines) in unconfirmed where !lines.isEmpty {
            var queue = lines
            queue.append(contentsOf: queues[key] ?? LineQueue())
            queues[key] = queue
        }
        unconfirmed = [:]
        replies = LineQueue()
        sentSinceMarker = [:]
        markers = []
        doorbell?.finish()
        doorbell = nil
        outbound = nil
        let registered = status.state == .registered
        status.state = .disconnected
        return registered
    }
}

/// A FIFO of lines with O(1) removal at the front.
struct LineQueue: Sendable {
    private var items: [IRCMessage] = []
    private var head = 0

    var count: Int { items.count - head }
    var isEmpty: Bool { count == 0 }
    var first: IRCMessage? { head < items.count ? items[head] : nil }

    mutating func append(_ message: IRCMessage) { items.append(message) }

    mutating func append(contentsOf other: LineQueue) {
        items.append(contentsOf: other.items[other.head...])
    }

    mutating func removeFirst() -> IRCMessage? {
        guard head < items.count else { return nil }
        let message = items[head]
        head += 1
        if head > 1024, head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
        return message
    }
}
