import SwitchboardAgent
import SwitchboardAgentTesting
import SwitchboardTesting
import Testing
import Yams

@testable import IRCBridge

@Suite("The IRC bridge as an agent plugin", .serialized)
struct PluginTests {
    @Test(.timeLimit(.minutes(1)))
    func relaysThroughTheAgent() async throws {
        let port = try IRCServers.inspircd()
        let channel = IRCServers.uniqueChannel()
        let nick = IRCServers.uniqueNick("agt")
        let user = try await IRCTestPeer.connect(port: port, nick: IRCServers.uniqueNick("irc"))
        try await user.join(channel)
        // The configuration as a YAML file gives it: ten lines.
        let yaml = """
            networks:
              - name: local
                server: 127.0.0.1
                port: \(port)
                tls: false
                nick: \(nick)
                floodControl: {burst: 10, intervalMilliseconds: 50}
                mappings:
                  - {room: test-room, channel: "\(channel)"}
            """
        let configuration = try YAMLDecoder().decode(IRCBridgeConfiguration.self, from: yaml)
        #expect(configuration.networks.first?.floodControl == FloodControl(burst: 10, interval: .milliseconds(50)))
        #expect(configuration.networks.first?.verifyCertificate == true)
        let plugin = IRCBridgePlugin(configuration: configuration)
        try await BotTest.run(plugins: [plugin]) { test in
            _ = try await user.next(timeout: .seconds(20)) { $0.command == "JOIN" && $0.sourceNick == nick }
            try await test.say("hello from chat")
            #expect(try await user.privmsg(to: channel).parameters[1] == "<tester> hello from chat")
            try await user.send("PRIVMSG \(channel) :hello from IRC")
            let relayed = try await test.tester.nextMessage(from: test.bot.id, timeout: .seconds(20))
            #expect(relayed.content == "hello from IRC")
            #expect(relayed.meta?["bridge"]?["nick"]?.stringValue == user.nick)
            #expect(relayed.meta?["bridge"]?["network"]?.stringValue == "local")
            // The bot's own relayed message did not go back to IRC.
            #expect(await user.nothing(for: .milliseconds(300)) { $0.command == "PRIVMSG" } == nil)
        }
        await user.close()
    }

    @Test(.timeLimit(.minutes(1)))
    func controlCharactersFromIRCAreRemovedAndTheBridgeKeepsRelaying() async throws {
        // Chat refuses content with control characters; such a line once made the bridge retry
        // it forever inside the IRC read loop: nothing more was relayed, and PINGs went unanswered.
        let port = try IRCServers.inspircd()
        let channel = IRCServers.uniqueChannel()
        let nick = IRCServers.uniqueNick("agt")
        let user = try await IRCTestPeer.connect(port: port, nick: IRCServers.uniqueNick("irc"))
        let leaver = try await IRCTestPeer.connect(port: port, nick: IRCServers.uniqueNick("lvr"))
        try await user.join(channel)
        try await leaver.join(channel)
        var network = IRCNetworkConfiguration(name: "local", server: "127.0.0.1", port: port, nick: nick, mappings: [IRCMapping(room: "test-room", channel: channel)])
        network.tls = false
        network.relay.membership = true
        network.relay.topics = true
        let plugin = IRCBridgePlugin(configuration: IRCBridgeConfiguration(networks: [network]))
        try await BotTest.run(plugins: [plugin]) { test in
            _ = try await user.next(timeout: .seconds(20)) { $0.command == "JOIN" && $0.sourceNick == nick }
            func relayed() async throws -> String {
                try await test.tester.nextMessage(from: test.bot.id, timeout: .seconds(10)).content
            }
            try await user.send("PRIVMSG \(channel) :a bell\u{07}, a lone \u{01}, an escape \u{1B}[0m, a \rreturn")
            #expect(try await relayed() == "a bell, a lone , an escape [0m, a return")
            try await user.send("PRIVMSG \(channel) :\u{07}")
            try await user.send("TOPIC \(channel) :\u{02}new\u{02} topic\u{07}")
            #expect(try await relayed() == "\(user.nick ?? "") set the topic of \(channel): new topic")
            try await leaver.send("QUIT :\u{03}4Leaving\u{07}")
            #expect(try await relayed() == "\(leaver.nick ?? "") quit (Leaving)")
            try await user.send("PRIVMSG \(channel) :still here")
            #expect(try await relayed() == "still here")
        }
        await leaver.close()
        await user.close()
    }

    @Test func refusesABadConfigurationWithTheReason() throws {
        let yaml = """
            networks:
              - server: irc.example.org
                mappings: [{room: general, channel: "general"}]
            """
        #expect(throws: DecodingError.self) { try YAMLDecoder().decode(IRCBridgeConfiguration.self, from: yaml) }
        let defaults = try YAMLDecoder().decode(IRCBridgeConfiguration.self, from: "networks: [{server: irc.example.org}]")
        #expect(defaults.networks[0].port == 6697)
        #expect(defaults.networks[0].clientConfiguration().server.usesTLS)
        #expect(defaults.networks[0].floodControl == FloodControl())
        #expect(defaults.networks[0].puppets == PuppetOptions())
        #expect(!defaults.networks[0].puppets.enabled)
        #expect(defaults.networks[0].format.quoteLength == 50)

        let puppets = try YAMLDecoder().decode(
            IRCBridgeConfiguration.self,
            from: #"networks: [{server: irc.example.org, format: {quoteLength: 20}, puppets: {enabled: true, limit: 3, suffix: "|sb", idleMinutes: 5}}]"#
        )
        #expect(puppets.networks[0].puppets == PuppetOptions(enabled: true, limit: 3, suffix: "|sb", idleTimeout: .seconds(300)))
        #expect(puppets.networks[0].format.quoteLength == 20)
        #expect(throws: DecodingError.self) {
            try YAMLDecoder().decode(IRCBridgeConfiguration.self, from: #"networks: [{server: irc.example.org, puppets: {suffix: "[ m]"}}]"#)
        }
        // A suffix that leaves no room for a name would give nicks over the maximum.
        #expect(throws: DecodingError.self) {
            try YAMLDecoder().decode(IRCBridgeConfiguration.self, from: #"networks: [{server: irc.example.org, puppets: {suffix: "[matrix]", maxNickLength: 8}}]"#)
        }
        let tight = try YAMLDecoder().decode(IRCBridgeConfiguration.self, from: #"networks: [{server: irc.example.org, puppets: {enabled: true, suffix: "[matrix]", maxNickLength: 9}}]"#)
        #expect(PuppetPool(tight.networks[0].puppets).uniqueNick(for: "ann") == "a[matrix]")
    }
}
