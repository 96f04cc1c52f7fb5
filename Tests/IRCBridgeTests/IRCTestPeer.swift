import Foundation
import NIOCore
import NIOPosix
import Synchronization
import SwitchboardTesting

@testable import IRCBridge

/// The real IRC servers that scripts/services/irc.sh starts. A test that needs them fails when
/// the variables are missing: run the tests through scripts/test.sh, or source the script first.
enum IRCServers {
    static func port(_ variable: String) throws -> Int {
        guard let value = ProcessInfo.processInfo.environment[variable], let port = Int(value) else {
            throw TestFailure("\(variable) is not set: run the tests with scripts/test.sh, which starts the IRC servers (scripts/services/irc.sh)")
        }
        return port
    }

    static func ngircd() throws -> Int { try port("SWITCHBOARD_TEST_IRC_NGIRCD_PORT") }
    static func inspircd() throws -> Int { try port("SWITCHBOARD_TEST_IRC_INSPIRCD_PORT") }
    static func tls() throws -> Int { try port("SWITCHBOARD_TEST_IRC_TLS_PORT") }

    static func certificateAuthority() throws -> String {
        guard let path = ProcessInfo.processInfo.environment["SWITCHBOARD_TEST_IRC_CA"] else {
            throw TestFailure("SWITCHBOARD_TEST_IRC_CA is not set: run the tests with scripts/test.sh (scripts/services/irc.sh)")
        }
        return path
    }

    /// A channel name no other test uses.
    static func uniqueChannel(_ stem: String = "t") -> String { "#\(stem)\(UInt32.random(in: 0..<UInt32.max))" }

    /// A nick no other test uses (9 characters at most).
    static func uniqueNick(_ stem: String) -> String { stem.prefix(4) + String(UInt32.random(in: 10000..<99999)) }
}

/// A raw IRC connection for tests: as a user connected to a real server, or as the server side of
/// a scripted peer. Lines are kept in arrival order; `next(where:)` takes the oldest that matches.
final class IRCTestPeer: Sendable {
    private struct State {
        var outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>?
        var channel: (any Channel)?
    }

    private let state = Mutex(State())
    /// Lines received and not yet taken.
    let inbox = Inbox<IRCMessage>()
    private let answersPings: Bool
    /// The nick it registered with, if it did.
    let nick: String?

    private init(answersPings: Bool, nick: String? = nil) {
        self.answersPings = answersPings
        self.nick = nick
    }

    /// Connects to a server and, with a nick, registers (asking for `capabilities`) and waits for 001.
    static func connect(port: Int, nick: String? = nil, capabilities: [String] = []) async throws -> IRCTestPeer {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(IRCLineDecoder()))
                    return try NIOAsyncChannel<String, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        let peer = IRCTestPeer(answersPings: true, nick: nick)
        await peer.start(channel)
        if let nick {
            if !capabilities.isEmpty {
                try await peer.send("CAP REQ :\(capabilities.joined(separator: " "))")
            }
            try await peer.send("NICK \(nick)")
            try await peer.send("USER test 0 * :test")
            if !capabilities.isEmpty {
                _ = try await peer.next { $0.command == "CAP" }
                try await peer.send("CAP END")
            }
            _ = try await peer.next(timeout: .seconds(20)) { $0.command == "001" }
        }
        return peer
    }

    /// Starts reading; returns once the connection can be written to.
    private func start(_ channel: NIOAsyncChannel<String, ByteBuffer>) async {
        state.withLock { $0.channel = channel.channel }
        let (ready, readyContinuation) = AsyncStream.makeStream(of: Void.self)
        Task {
            try? await channel.executeThenClose { inbound, outbound in
                self.state.withLock { $0.outbound = outbound }
                readyContinuation.finish()
                for try await line in inbound {
                    guard let message = try? IRCMessage(parsing: line) else { continue }
                    if self.answersPings, message.command == "PING" {
                        try await outbound.write(ByteBuffer(string: IRCMessage(command: "PONG", parameters: message.parameters).line + "\r\n"))
                        continue
                    }
                    self.inbox.append(message)
                }
            }
            readyContinuation.finish()
            self.inbox.close()
        }
        for await _ in ready {}
    }

    /// Sends one line (CR LF added).
    func send(_ line: String) async throws {
        guard let outbound = state.withLock({ $0.outbound }) else { throw TestFailure("the IRC test connection is not open") }
        try await outbound.write(ByteBuffer(string: line + "\r\n"))
    }

    /// Joins a channel and waits for the end of its NAMES list.
    func join(_ channel: String) async throws {
        try await send("JOIN \(channel)")
        _ = try await next { $0.command == "366" && IRCCase.equal($0.parameters[1], channel) }
    }

    /// The oldest line that matches, waiting for it up to `timeout`.
    func next(timeout: Duration = .seconds(10), where match: @escaping @Sendable (IRCMessage) -> Bool = { _ in true }) async throws -> IRCMessage {
        try await inbox.next(timeout: timeout, where: match)
    }

    /// The next PRIVMSG to `channel`, waiting for it.
    func privmsg(to channel: String, timeout: Duration = .seconds(20)) async throws -> IRCMessage {
        try await next(timeout: timeout) { $0.command == "PRIVMSG" && IRCCase.equal($0.parameters.first ?? "", channel) }
    }

    /// Waits for a line that matches for `duration`; nil if none came. Only to check that
    /// something does NOT arrive after what would have caused it.
    func nothing(for duration: Duration = .milliseconds(500), where match: @escaping @Sendable (IRCMessage) -> Bool) async -> IRCMessage? {
        await inbox.nothing(for: duration, where: match)
    }

    /// Closes the connection.
    func close() async {
        let channel = state.withLock { $0.channel }
        try? await channel?.close()
    }
}

/// A scripted IRC server: a listener on a free loopback port whose connections the test drives
/// line by line, for what the real servers here cannot do (SASL and NickServ need services).
final class IRCTestListener: Sendable {
    let port: Int
    private let connections: AsyncStream<IRCTestPeer>
    private let serverChannel: any Channel

    private init(port: Int, connections: AsyncStream<IRCTestPeer>, serverChannel: any Channel) {
        self.port = port
        self.connections = connections
        self.serverChannel = serverChannel
    }

    static func withListener<Result: Sendable>(_ body: (IRCTestListener) async throws -> Result) async throws -> Result {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: 0) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(IRCLineDecoder()))
                    return try NIOAsyncChannel<String, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        let (connections, continuation) = AsyncStream.makeStream(of: IRCTestPeer.self)
        let acceptor = Task {
            try? await server.executeThenClose { inbound in
                for try await channel in inbound {
                    continuation.yield(await IRCTestPeer.accepted(channel))
                }
            }
            continuation.finish()
        }
        let listener = IRCTestListener(port: server.channel.localAddress!.port!, connections: connections, serverChannel: server.channel)
        defer { acceptor.cancel() }
        do {
            let result = try await body(listener)
            try? await server.channel.close()
            return result
        } catch {
            try? await server.channel.close()
            throw error
        }
    }

    /// The next connection, waiting for it.
    func accept(timeout: Duration = .seconds(10)) async throws -> IRCTestPeer {
        let connections = self.connections
        guard let peer = try await withTimeout(timeout, { await connections.first { _ in true } }) else {
            throw TestFailure("no connection came to the scripted IRC server")
        }
        return peer
    }
}

extension IRCTestPeer {
    fileprivate static func accepted(_ channel: NIOAsyncChannel<String, ByteBuffer>) async -> IRCTestPeer {
        let peer = IRCTestPeer(answersPings: false)
        await peer.start(channel)
        return peer
    }
}

/// Things that arrive (IRC lines, bridge events, chat frames) kept in order, for tests to wait on:
/// `next(where:)` takes the oldest that matches and leaves the others.
final class Inbox<Element: Sendable>: Sendable {
    private struct State {
        var items: [Element] = []
        var waiters: [(id: Int, match: @Sendable (Element) -> Bool, continuation: CheckedContinuation<Element?, Never>)] = []
        var closed = false
        var nextWaiterID = 0
    }

    private let state = Mutex(State())

    init() {}

    func append(_ item: Element) {
        let waiter: CheckedContinuation<Element?, Never>? = state.withLock { state in
            if let index = state.waiters.firstIndex(where: { $0.match(item) }) {
                return state.waiters.remove(at: index).continuation
            }
            state.items.append(item)
            return nil
        }
        waiter?.resume(returning: item)
    }

    func close() {
        let waiters = state.withLock { state in
            state.closed = true
            defer { state.waiters = [] }
            return state.waiters.map(\.continuation)
        }
        waiters.forEach { $0.resume(returning: nil) }
    }

    /// Items received and not yet taken.
    var pending: [Element] { state.withLock { $0.items } }

    /// The oldest item that matches, waiting for it up to `timeout`.
    func next(timeout: Duration = .seconds(10), where match: @escaping @Sendable (Element) -> Bool = { _ in true }) async throws -> Element {
        let id = state.withLock { state in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        let item = try await withTimeout(timeout, onTimeout: { self.removeWaiter(id) }) {
            await withCheckedContinuation { (continuation: CheckedContinuation<Element?, Never>) in
                let immediate: Element?? = self.state.withLock { state in
                    if let index = state.items.firstIndex(where: match) {
                        return .some(state.items.remove(at: index))
                    }
                    if state.closed { return .some(nil) }
                    state.waiters.append((id, match, continuation))
                    return nil
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        }
        guard let item else { throw TestFailure("closed while waiting for \(Element.self)") }
        return item
    }

    /// Waits for a match for `duration`; nil if none came. Only to check that something does NOT arrive.
    func nothing(for duration: Duration, where match: @escaping @Sendable (Element) -> Bool) async -> Element? {
        try? await next(timeout: duration, where: match)
    }

    private func removeWaiter(_ id: Int) {
        let continuation = state.withLock { state -> CheckedContinuation<Element?, Never>? in
            guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return state.waiters.remove(at: index).continuation
        }
        continuation?.resume(returning: nil)
    }
}
