import Foundation
import NIOCore
import NIOPosix
import Spawn
import SwitchboardProtocol
import SwitchboardTesting
import Synchronization
import Testing

@testable import IRCBridge

#if canImport(Glibc)
import Glibc
#endif

/// An IRC server of the test's own (ngircd, or InspIRCd with its IRCv3 modules) on a free
/// loopback port, that the test stops and starts again on the same port. Started with
/// `ChildProcess`, which gives the child a clean signal mask, so that SIGTERM stops it.
final class OwnIRCServer: Sendable {
    let port: Int
    private let binary: String
    private let arguments: [String]
    private let directory: String
    private let process = Mutex<ChildProcess?>(nil)

    private init(port: Int, binary: String, arguments: [String], directory: String) {
        self.port = port
        self.binary = binary
        self.arguments = arguments
        self.directory = directory
    }

    /// Writes the configuration and starts `kind` (`ngircd` or `inspircd`); fails when it is missing.
    static func start(_ kind: String) async throws -> OwnIRCServer {
        let variable = "SWITCHBOARD_TEST_IRC_\(kind.uppercased())"
        guard let binary = ProcessInfo.processInfo.environment[variable] else {
            throw TestFailure("\(variable) is not set: run the tests with scripts/test.sh (scripts/services/irc.sh)")
        }
        // A free port: bind to port 0, note it, let it go.
        let probe = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        let port = probe.localAddress!.port!
        try await probe.close()
        let directory = NSTemporaryDirectory() + "\(kind)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: directory)
        let server: OwnIRCServer
        if kind == "inspircd" {
            try inspircdConfiguration(port: port, directory: directory).write(toFile: directory + "/inspircd.conf", atomically: true, encoding: .utf8)
            server = OwnIRCServer(port: port, binary: binary, arguments: ["--config", directory + "/inspircd.conf", "--nofork", "--runasroot"], directory: directory)
        } else {
            try ngircdConfiguration(port: port, directory: directory).write(toFile: directory + "/ngircd.conf", atomically: true, encoding: .utf8)
            server = OwnIRCServer(port: port, binary: binary, arguments: ["-n", "-f", directory + "/ngircd.conf"], directory: directory)
        }
        try await server.start()
        return server
    }

    /// As scripts/services/irc.sh configures InspIRCd: IRCv3 modules, no fake lag.
    private static func inspircdConfiguration(port: Int, directory: String) -> String {
        """
        <server name="own.test.local" description="test" network="Test">
        <admin name="t" nick="t" email="t@t.t">
        <bind address="127.0.0.1" port="\(port)" type="clients">
        <connect allow="127.0.0.1" maxlocal="1000" maxglobal="1000" localmax="1000" globalmax="1000" limit="1000" threshold="1000000" commandrate="100000000" sendq="10000000" recvq="10000000" pingfreq="120" timeout="60" fakelag="no" useident="no" resolvehostnames="no" hardsendq="10000000" softsendq="10000000">
        <pid file="\(directory)/inspircd.pid">
        <options maxtargets="20">
        <security runasuser="nobody" runasgroup="nogroup">
        <limits maxnick="30">
        <module name="cap">
        <module name="ircv3">
        <module name="ircv3_echomessage">
        <module name="ircv3_servertime">
        <module name="ircv3_msgid">
        <module name="ircv3_batch">
        """
    }

    private static func ngircdConfiguration(port: Int, directory: String) -> String {
        """
            [Global]
            Name = own.test.local
            Info = test
            Listen = 127.0.0.1
            Ports = \(port)
            PidFile = \(directory)/ngircd.pid
            ServerUID = nobody
            ServerGID = nogroup
            MotdPhrase = test
            [Limits]
            MaxNickLength = 30
            [Options]
            PAM = no
            Ident = no
            DNS = no
            """
    }

    /// Starts the server (again) and returns once it accepts connections.
    func start() async throws {
        let devNull = open("/dev/null", O_RDWR)
        defer { close(devNull) }
        let child = try ChildProcess.spawn(
            binary, arguments: arguments, environment: ProcessInfo.processInfo.environment,
            standardInput: devNull, standardOutput: devNull, standardError: devNull
        )
        process.withLock { $0 = child }
        try await withTimeout(.seconds(10)) { [port, binary] in
            while true {
                if let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get() {
                    try? await channel.close()
                    return
                }
                guard child.isRunning else { throw TestFailure("\(binary) exited (\(child.exitStatus()!)) before listening on port \(port)") }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    /// Stops the server with SIGTERM and waits until it has ended.
    func stop() async {
        guard let child = process.withLock({ $0.take() }) else { return }
        child.send(SIGTERM)
        _ = await child.termination()
    }

    /// Stops the server and removes its files.
    func remove() async {
        await stop()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

extension TestSocket {
    /// The next chat message in a room from `userId`, leaving the others.
    func message(from userId: String, timeout: Duration = .seconds(20)) async throws -> Message {
        try await next(timeout: timeout) { $0.type == "message" && (try? $0.decode(Message.self))?.userId == userId }.decode(Message.self)
    }
}

@Suite("The bridge across an IRC server restart", .serialized)
struct IRCServerRestartTests {
    @Test(.timeLimit(.minutes(1)), arguments: ["ngircd", "inspircd"])
    func ircServerRestartedMidConversation(server kind: String) async throws {
        let ircServer = try await OwnIRCServer.start(kind)
        do {
            try await conversation(across: ircServer)
        } catch {
            await ircServer.remove()
            throw error
        }
        await ircServer.remove()
    }

    private func conversation(across ircServer: OwnIRCServer) async throws {
        let channel = IRCServers.uniqueChannel()
        let chatCount = 20
        // The bridge reaches the server through a proxy, so that the test can hold it off after
        // the restart until the IRC user is back in the channel to see what it sends.
        try await TCPProxy.withProxy(targetPort: ircServer.port) { proxy in
            try await TestServer.withServer { server in
                let fixture = try await RelayFixture.make(server)
                let ann = try await server.connect(token: fixture.ann.token)
                try await ann.join(fixture.room.id)
                let nick = IRCServers.uniqueNick("usr")
                let before = try await IRCTestPeer.connect(port: ircServer.port, nick: nick)
                try await before.join(channel)
                let relayNick = IRCServers.uniqueNick("rel")
                try await withRelay(fixture, network: network(port: proxy.port, nick: relayNick, channel: channel)) { relay, _ in
                    _ = try await before.next(timeout: .seconds(20)) { $0.command == "JOIN" && $0.sourceNick == relayNick }

                    // Both sides talk; chat goes on talking while the IRC server is down and after it is back.
                    for number in 1...5 { try await before.send("PRIVMSG \(channel) :irc \(number)") }
                    for number in 1...5 {
                        #expect(try await ann.message(from: fixture.bot.user.id).content == "irc \(number)")
                    }
                    let (confirmed, confirmedContinuation) = AsyncStream.makeStream(of: Void.self)
                    let chatSender = Task {
                        for number in 1...chatCount {
                            try await ann.sendMessage("chat \(number)", roomId: fixture.room.id)
                            // The server goes down once the first three are confirmed, so that no
                            // line is in flight then: without echo-message (ngircd) a line the server
                            // took just before it stopped, but whose PING answer never came, cannot be
                            // told from a lost one, and is sent again (at least once, never lost).
                            if number == 3 {
                                for await _ in confirmed {}
                            }
                            try await Task.sleep(for: .milliseconds(30))
                        }
                    }
                    try await waitUntil(timeout: .seconds(20)) {
                        before.inbox.pending.contains { $0.command == "PRIVMSG" && $0.parameters.last == "<ann> chat 3" }
                            && relay.irc.status.queued + relay.irc.status.unconfirmed == 0
                    }
                    proxy.setTarget(port: nil)
                    await ircServer.stop()
                    confirmedContinuation.finish()
                    try await ircServer.start()
                    let after = try await IRCTestPeer.connect(port: ircServer.port, nick: nick)
                    try await after.join(channel)
                    proxy.setTarget(port: ircServer.port)
                    _ = try await after.next(timeout: .seconds(20)) { $0.command == "JOIN" && $0.sourceNick == relayNick }
                    try await chatSender.value
                    for number in 6...10 { try await after.send("PRIVMSG \(channel) :irc \(number)") }

                    // Every chat line once, in order, across the two servers' lifetimes.
                    var seen = before.inbox.pending.filter { $0.command == "PRIVMSG" }.map { $0.parameters.last ?? "" }
                    while seen.count < chatCount {
                        seen.append(try await after.privmsg(to: channel, timeout: .seconds(20)).parameters[1])
                    }
                    #expect(seen == (1...chatCount).map { "<ann> chat \($0)" })
                    for number in 6...10 {
                        #expect(try await ann.message(from: fixture.bot.user.id).content == "irc \(number)")
                    }
                    #expect(await after.nothing(for: .milliseconds(500)) { $0.command == "PRIVMSG" } == nil)
                    await after.close()
                }
                await before.close()
            }
        }
    }
}
