import Foundation
import NIOCore
import NIOPosix
import SwitchboardTesting
import Testing

@testable import IRCBridge

/// An ngircd of the test's own, on a free port, that the test can stop and start again.
final class OwnIRCServer: @unchecked Sendable {
    let port: Int
    private let directory: String
    private var process: Process?

    init() async throws {
        guard let binary = ProcessInfo.processInfo.environment["SWITCHBOARD_TEST_IRC_NGIRCD"] else {
            throw TestFailure("SWITCHBOARD_TEST_IRC_NGIRCD is not set: run the tests with scripts/test.sh (scripts/services/irc.sh)")
        }
        // A free port: bind to port 0, note it, let it go.
        let probe = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        port = probe.localAddress!.port!
        try await probe.close()
        directory = NSTemporaryDirectory() + "ngircd-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let configuration = """
            [Global]
            Name = own.test.local
            Info = test
            Listen = 127.0.0.1
            Ports = \(port)
            PidFile = \(directory)/ngircd.pid
            ServerUID = nobody
            ServerGID = nogroup
            [Limits]
            MaxNickLength = 30
            [Options]
            PAM = no
            Ident = no
            DNS = no
            """
        try configuration.write(toFile: directory + "/ngircd.conf", atomically: true, encoding: .utf8)
        self.binary = binary
        try await start()
    }

    private var binary = ""

    func start() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["-n", "-f", directory + "/ngircd.conf"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        // Ready when it accepts a connection.
        try await withTimeout(.seconds(10)) { [port] in
            while true {
                if let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get() {
                    try? await channel.close()
                    return
                }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    func stop() {
        guard let process else { return }
        process.terminate()
        process.waitUntilExit()
        self.process = nil
    }

    deinit {
        process?.terminate()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

@Suite("IRC client against scripted peers and restarts", .serialized)
struct ScriptedIRCTests {
    @Test(.timeLimit(.minutes(1)))
    func saslPlainLogsInBeforeRegistering() async throws {
        try await IRCTestListener.withListener { listener in
            var configuration = clientConfiguration(port: listener.port, nick: "relay", channels: [IRCChannel("#c", key: "k")])
            configuration.session.sasl = SASLCredentials(account: "bridge", password: "s3cret")
            try await withIRCClient(configuration) { _, events in
                let server = try await listener.accept()
                #expect(try await server.next().line == "CAP LS 302")
                #expect(try await server.next().line == "NICK relay")
                _ = try await server.next { $0.command == "USER" }
                try await server.send(":scripted CAP * LS :sasl=PLAIN message-tags")
                #expect(try await server.next().line == "CAP REQ :message-tags sasl")
                try await server.send(":scripted CAP relay ACK :message-tags sasl")
                #expect(try await server.next().line == "AUTHENTICATE PLAIN")
                try await server.send("AUTHENTICATE +")
                let payload = try await server.next()
                #expect(payload.command == "AUTHENTICATE")
                #expect(payload.parameters == [Base64.encode(Array("bridge\0bridge\0s3cret".utf8))])
                try await server.send(":scripted 900 relay relay!u@h bridge :You are now logged in as bridge")
                try await server.send(":scripted 903 relay :SASL authentication successful")
                #expect(try await server.next().line == "CAP END")
                try await server.send(":scripted 001 relay :Welcome")
                #expect(try await events.registered() == "relay")
                #expect(try await server.next().line == "JOIN #c k")
            }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func identifiesToNickServ() async throws {
        try await IRCTestListener.withListener { listener in
            var configuration = clientConfiguration(port: listener.port, nick: "relay", channels: [IRCChannel("#c")])
            configuration.session.nickServPassword = "hunter2"
            try await withIRCClient(configuration) { _, events in
                let server = try await listener.accept()
                _ = try await server.next { $0.command == "USER" }
                try await server.send(":scripted 421 relay CAP :Unknown command")
                try await server.send(":scripted 001 relay :Welcome")
                _ = try await events.registered()
                #expect(try await server.next { $0.command == "PRIVMSG" }.line == "PRIVMSG NickServ :IDENTIFY hunter2")
                #expect(try await server.next { $0.command == "JOIN" }.line == "JOIN #c")
            }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aSilentServerIsLeftAndReconnected() async throws {
        try await IRCTestListener.withListener { listener in
            var configuration = clientConfiguration(port: listener.port, nick: "relay", channels: [])
            configuration.session.pingInterval = .milliseconds(300)
            configuration.session.pingTimeout = .milliseconds(600)
            try await withIRCClient(configuration) { _, events in
                let first = try await listener.accept()
                _ = try await first.next { $0.command == "USER" }
                try await first.send(":scripted 001 relay :Welcome")
                _ = try await events.registered()
                // It pings when quiet; the server answers once, then falls silent.
                let ping = try await first.next { $0.command == "PING" }
                try await first.send(":scripted PONG scripted :\(ping.parameters.last ?? "")")
                _ = try await first.next { $0.command == "PING" }
                let event = try await events.next { if case .disconnected = $0 { true } else { false } }
                #expect("\(event)".contains("PONG"))
                let second = try await listener.accept()
                #expect(try await second.next().line == "CAP LS 302")
            }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func ircServerRestartedMidConversation() async throws {
        let server = try await OwnIRCServer()
        let channel = IRCServers.uniqueChannel()
        // The bridge reaches the server through a proxy, so that the test can hold it off after the
        // restart until the IRC user is back in the channel to see what it sends.
        try await TCPProxy.withProxy(targetPort: server.port) { proxy in
            try await withIRCClient(clientConfiguration(port: proxy.port, nick: "relay", channels: [IRCChannel(channel)])) { client, events in
                _ = try await events.registered()
                try await events.joined(channel)
                var user = try await IRCTestPeer.connect(port: server.port, nick: "someone")
                try await user.join(channel)
                try await client.send(["before"], to: channel)
                #expect(try await user.privmsg(to: channel).parameters[1] == "before")

                proxy.setTarget(port: nil)
                server.stop()
                _ = try await events.next { if case .disconnected = $0 { true } else { false } }
                // Sent while IRC is down: kept, then sent after the reconnect, once, in order.
                try await client.send((1...20).map { "while down \($0)" }, to: channel)
                try await server.start()
                user = try await IRCTestPeer.connect(port: server.port, nick: "someone")
                try await user.join(channel)
                proxy.setTarget(port: server.port)
                _ = try await events.registered()
                for number in 1...20 {
                    #expect(try await user.privmsg(to: channel, timeout: .seconds(20)).parameters[1] == "while down \(number)")
                }
                try await client.send(["after"], to: channel)
                #expect(try await user.privmsg(to: channel).parameters[1] == "after")
                #expect(await user.nothing(for: .milliseconds(300)) { $0.command == "PRIVMSG" } == nil)
                await user.close()
            }
        }
        server.stop()
    }
}
