import Logging
import NIOCore
import NIOPosix
import SwitchboardTesting
import Testing

@testable import IRCBridge

/// Runs an `IRCClient` for the length of `body`, with its events in an inbox.
func withIRCClient<Result: Sendable>(
    _ configuration: IRCClientConfiguration,
    _ body: (IRCClient, Inbox<IRCClientEvent>) async throws -> Result
) async throws -> Result {
    let events = Inbox<IRCClientEvent>()
    var logger = Logger(label: "switchboard.test.irc")
    logger.logLevel = .info
    let client = IRCClient(configuration: configuration, logger: logger) { events.append($0) }
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await client.run() }
        defer { group.cancelAll() }
        return try await body(client, events)
    }
}

extension Inbox where Element == IRCClientEvent {
    func registered(timeout: Duration = .seconds(20)) async throws -> String {
        let event = try await next(timeout: timeout) { if case .registered = $0 { true } else { false } }
        guard case .registered(let nick) = event else { throw TestFailure("unreachable") }
        return nick
    }

    func joined(_ channel: String, timeout: Duration = .seconds(20)) async throws {
        _ = try await next(timeout: timeout) { $0 == .joined(channel) || $0 == .joined(channel.lowercased()) }
    }

    func message(timeout: Duration = .seconds(10), where match: @escaping @Sendable (IRCChatMessage) -> Bool = { _ in true }) async throws -> IRCChatMessage {
        let event = try await next(timeout: timeout) { if case .irc(.message(let message)) = $0 { match(message) } else { false } }
        guard case .irc(.message(let message)) = event else { throw TestFailure("unreachable") }
        return message
    }
}

func clientConfiguration(port: Int, nick: String, channels: [IRCChannel], flood: FloodControl = FloodControl()) -> IRCClientConfiguration {
    IRCClientConfiguration(
        server: IRCServer(host: "127.0.0.1", port: port, tls: false),
        session: IRCSessionConfiguration(nick: nick, channels: channels),
        floodControl: flood,
        backoff: ReconnectBackoff(initial: .milliseconds(200), maximum: .seconds(2)),
        tickInterval: .milliseconds(200)
    )
}

@Suite("IRC client against real servers", .serialized)
struct IRCClientTests {
    @Test(.timeLimit(.minutes(1)), arguments: ["ngircd", "inspircd"])
    func relaysBothWaysWithSplitLines(server: String) async throws {
        let port = try server == "ngircd" ? IRCServers.ngircd() : IRCServers.inspircd()
        let channel = IRCServers.uniqueChannel()
        let nick = IRCServers.uniqueNick("br")
        let user = try await IRCTestPeer.connect(port: port, nick: IRCServers.uniqueNick("usr"))
        try await user.join(channel)
        try await withIRCClient(clientConfiguration(port: port, nick: nick, channels: [IRCChannel(channel)])) { client, events in
            #expect(try await events.registered() == nick)
            try await events.joined(channel)
            if server == "inspircd" {
                #expect(client.status.state == .registered)
            }

            // IRC → client, an ACTION with formatting.
            try await user.send("PRIVMSG \(channel) :\u{01}ACTION waves \u{02}hard\u{02}\u{01}")
            let action = try await events.message { $0.channel == channel }
            #expect(action.isAction && action.text == "waves \u{02}hard\u{02}")
            #expect(!action.isEcho)

            // Client → IRC: a long message split by bytes with emoji and accents at the edges.
            let budget = client.textBudget(for: channel)
            let text = String(repeating: "é", count: 150) + "👩🏽‍🚀" + String(repeating: "ü", count: 200) + "🇫🇷"
            let lines = RelayFormat().lines(nick: "ann", room: "general", text: text, budget: budget)
            #expect(lines.count >= 2)
            try await client.send(lines, to: channel)
            var received: [String] = []
            for _ in lines {
                let message = try await user.privmsg(to: channel)
                #expect(message.wireSize <= 512)
                received.append(message.parameters[1])
            }
            #expect(received == lines)
            #expect(received.map { String($0.dropFirst("<ann> ".count)) }.joined() == text)
        }
        await user.close()
    }

    @Test(.timeLimit(.minutes(1)))
    func echoMessageConfirmsDeliveryOnInspIRCd() async throws {
        let port = try IRCServers.inspircd()
        let channel = IRCServers.uniqueChannel()
        try await withIRCClient(clientConfiguration(port: port, nick: IRCServers.uniqueNick("ec"), channels: [IRCChannel(channel)])) { client, events in
            _ = try await events.registered()
            try await events.joined(channel)
            let watcher = try await IRCTestPeer.connect(port: port, nick: IRCServers.uniqueNick("w"))
            try await watcher.join(channel)
            try await client.send(["one", "two"], to: channel)
            #expect(try await watcher.privmsg(to: channel).parameters[1] == "one")
            #expect(try await watcher.privmsg(to: channel).parameters[1] == "two")
            // The echoes are not reported as IRC messages: nothing of ours comes back as an event.
            #expect(await events.nothing(for: .milliseconds(300)) { if case .irc(.message) = $0 { true } else { false } } == nil)
            await watcher.close()
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aBurstOf200ArrivesCompleteAndInOrderUnderFloodControl() async throws {
        // InspIRCd, configured without fake lag: ngircd paces every client itself (about one
        // command a second after a burst), which would measure its pacing rather than ours.
        let port = try IRCServers.inspircd()
        let channel = IRCServers.uniqueChannel()
        let user = try await IRCTestPeer.connect(port: port, nick: IRCServers.uniqueNick("usr"))
        try await user.join(channel)
        let flood = FloodControl(burst: 5, interval: .milliseconds(25))
        try await withIRCClient(clientConfiguration(port: port, nick: IRCServers.uniqueNick("fl"), channels: [IRCChannel(channel)], flood: flood)) { client, events in
            _ = try await events.registered()
            try await events.joined(channel)
            let start = ContinuousClock.now
            try await client.send((1...200).map { "line \($0)" }, to: channel)
            for number in 1...200 {
                #expect(try await user.privmsg(to: channel).parameters[1] == "line \(number)")
            }
            #expect(client.status.queued == 0)
            // Paced: after the burst of 5, one line per 25 ms at most. (Not the last line's own
            // wait: on a busy machine the sender can fall behind the bucket, which then has a
            // token ready for every line.)
            #expect(ContinuousClock.now - start >= .milliseconds(25) * 195)
        }
        await user.close()
    }

    @Test(.timeLimit(.minutes(1)))
    func aChannelThatRefusesUsDropsItsLinesAndIsTriedAgain() async throws {
        // Lines for a channel we cannot join once waited forever, and a full queue blocked the
        // sender: the agent, handling one event at a time, stalled with it.
        let port = try IRCServers.inspircd()
        let channel = IRCServers.uniqueChannel()
        let nick = IRCServers.uniqueNick("br")
        let op = try await IRCTestPeer.connect(port: port, nick: IRCServers.uniqueNick("op"))
        try await op.join(channel)  // the first in, so a channel operator
        var configuration = clientConfiguration(port: port, nick: nick, channels: [IRCChannel(channel)])
        configuration.queueLimit = 5
        configuration.session.rejoinDelay = .milliseconds(500)
        try await withIRCClient(configuration) { client, events in
            try await events.joined(channel)
            _ = try await op.next(timeout: .seconds(20)) { $0.command == "JOIN" && $0.sourceNick == nick }
            // Invite only, then kicked: the bridge cannot rejoin.
            try await op.send("MODE \(channel) +i")
            try await op.send("KICK \(channel) \(nick) :out")
            try await withTimeout(.seconds(10)) {
                try await client.send((1...20).map { "dropped \($0)" }, to: channel)
            }
            // Open again: the bridge joins on its next try, and speaks there.
            try await op.send("MODE \(channel) -i")
            _ = try await op.next(timeout: .seconds(20)) { $0.command == "JOIN" && $0.sourceNick == nick }
            // The bridge has read its own JOIN too (before, it would still drop the channel's lines).
            try await events.joined(channel)
            try await client.send(["after the rejoin"], to: channel)
            #expect(try await op.privmsg(to: channel).parameters[1] == "after the rejoin")
        }
        await op.close()
    }

    @Test(.timeLimit(.minutes(1)))
    func quitWhileConnectingEndsTheConnectionUnregistered() async throws {
        // A quit while the TCP connection was being made found no connection to say QUIT on,
        // and the connection, once made, registered and stayed: a ghost puppet.
        let listener = try StalledListener()
        var configuration = clientConfiguration(port: listener.port, nick: IRCServers.uniqueNick("gh"), channels: [])
        configuration.connectTimeout = .seconds(20)
        let client = IRCClient(configuration: configuration, logger: Logger(label: "switchboard.test.irc")) { _ in }
        let running = Task { try await client.run() }
        try await waitUntil { client.status.state == .connecting }
        await client.quit("idle")
        let connection = try await listener.makeRoom()
        let sent = try await StalledListener.readUntilClosed(connection)
        #expect(!sent.contains("NICK"))
        try await withTimeout(.seconds(10)) { try await running.value }
        #expect(client.status.connections == 0)
    }

    @Test(.timeLimit(.minutes(1)))
    func ctcpAnswersAreChargedToFloodControl() async throws {
        // CTCP VERSION and PING answers were written at once, past flood control: anyone could
        // make the bridge flood itself off the server.
        let port = try IRCServers.inspircd()
        let nick = IRCServers.uniqueNick("br")
        let user = try await IRCTestPeer.connect(port: port, nick: IRCServers.uniqueNick("usr"))
        let configuration = clientConfiguration(port: port, nick: nick, channels: [], flood: FloodControl(burst: 1, interval: .seconds(30)))
        try await withIRCClient(configuration) { client, events in
            _ = try await events.registered()
            for number in 1...20 { try await user.send("PRIVMSG \(nick) :\u{01}PING \(number)\u{01}") }
            let first = try await user.next(timeout: .seconds(10)) { $0.command == "NOTICE" && $0.sourceNick == nick }
            #expect(first.parameters[1] == "\u{01}PING 1\u{01}")
            // The burst of one is spent: the next answer waits 30 s.
            #expect(await user.nothing(for: .seconds(1)) { $0.command == "NOTICE" && $0.sourceNick == nick } == nil)
        }
        await user.close()
    }

    @Test(.timeLimit(.minutes(1)))
    func takenNickFallsBackToAnAlternate() async throws {
        let port = try IRCServers.ngircd()
        let nick = IRCServers.uniqueNick("tk")
        let holder = try await IRCTestPeer.connect(port: port, nick: nick)
        var configuration = clientConfiguration(port: port, nick: nick, channels: [])
        configuration.session.alternateNicks = [nick + "_"]
        configuration.session.nickRecoveryInterval = .milliseconds(300)
        try await withIRCClient(configuration) { client, events in
            #expect(try await events.registered() == nick + "_")
            // The holder leaves: the client takes its nick back.
            await holder.close()
            try await waitUntil { client.status.nick == nick }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func tlsWithTheTestCATrusted() async throws {
        let port = try IRCServers.tls()
        var configuration = clientConfiguration(port: port, nick: IRCServers.uniqueNick("tls"), channels: [])
        configuration.server = IRCServer(host: "127.0.0.1", port: port, tls: true, trustedCertificateFile: try IRCServers.certificateAuthority(), serverName: "localhost")
        try await withIRCClient(configuration) { _, events in
            _ = try await events.registered()
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func tlsRefusesAWrongHostName() async throws {
        let port = try IRCServers.tls()
        var configuration = clientConfiguration(port: port, nick: IRCServers.uniqueNick("tls"), channels: [])
        configuration.server = IRCServer(host: "127.0.0.1", port: port, tls: true, trustedCertificateFile: try IRCServers.certificateAuthority(), serverName: "wrong.example")
        try await withIRCClient(configuration) { _, events in
            let event = try await events.next { if case .disconnected = $0 { true } else { false } }
            guard case .disconnected(let reason) = event else { return }
            // The refusal may surface as the TLS error or, when the server closes first, as the
            // closed channel; either way the client never registers.
            #expect(reason.lowercased().contains("certificate") || reason.lowercased().contains("handshake") || reason.contains("SSL") || reason.contains("closed channel"))
            #expect(events.pending.allSatisfy { if case .registered = $0 { false } else { true } })
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func tlsRefusesAnUntrustedCertificate() async throws {
        let port = try IRCServers.tls()
        var configuration = clientConfiguration(port: port, nick: IRCServers.uniqueNick("tls"), channels: [])
        configuration.server = IRCServer(host: "localhost", port: port, tls: true)
        try await withIRCClient(configuration) { _, events in
            _ = try await events.next { if case .disconnected = $0 { true } else { false } }
            #expect(events.pending.allSatisfy { if case .registered = $0 { false } else { true } })
        }
    }
}

/// Waits until `condition` holds, checking at short intervals, failing after `timeout`.
func waitUntil(timeout: Duration = .seconds(10), _ condition: @escaping @Sendable () -> Bool) async throws {
    try await withTimeout(timeout) {
        while !condition() { try await Task.sleep(for: .milliseconds(20)) }
    }
}
