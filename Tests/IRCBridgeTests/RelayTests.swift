import Foundation
import Logging
import SwitchboardClient
import SwitchboardProtocol
import SwitchboardTesting
import Testing

@testable import IRCBridge

/// A chat server with a bot and a user in one room, and a relay for that room: what the plugin
/// does with the agent, done here with the client library directly.
struct RelayFixture {
    var server: TestServer
    var bot: AuthResponse
    var ann: AuthResponse
    var bob: AuthResponse
    var room: Room

    static func make(_ server: TestServer) async throws -> RelayFixture {
        let bot = try await server.register("relaybot")
        let ann = try await server.register("ann")
        let bob = try await server.register("bob")
        let room = try await server.createRoom("general", token: ann.token, members: [bot.user.id, bob.user.id])
        return RelayFixture(server: server, bot: bot, ann: ann, bob: bob, room: room)
    }

    func chatConfiguration(url: String, outboxFile: String? = nil) -> ClientConfiguration {
        var configuration = ClientConfiguration(server: url, credentials: .token(bot.token))
        configuration.backoff.initialDelay = .milliseconds(50)
        configuration.backoff.maxDelay = .milliseconds(400)
        configuration.connectTimeout = .seconds(3)
        configuration.outbox.file = outboxFile
        return configuration
    }
}

/// Runs a relay between the fixture's room and `network`, as the plugin does: chat messages of
/// others go to IRC in order; IRC messages come to chat through the client's outbox. With the
/// fixture's own server, the bot has joined the room before `body` runs; with `chatURL` (a server
/// that may not be up yet) it joins when it can.
func withRelay<Result: Sendable>(
    _ fixture: RelayFixture,
    network: IRCNetworkConfiguration,
    chatURL: String? = nil,
    outboxFile: String? = nil,
    _ body: (NetworkRelay, ChatClient) async throws -> Result
) async throws -> Result {
    var logger = Logger(label: "switchboard.test.relay")
    logger.logLevel = .critical
    let configuration = fixture.chatConfiguration(url: chatURL ?? fixture.server.baseURL, outboxFile: outboxFile)
    return try await ChatClient.withClient(configuration: configuration, logger: logger) { chat in
        let relay = NetworkRelay(network: network, logger: logger, backoff: ReconnectBackoff(initial: .milliseconds(200), maximum: .seconds(1))) { post in
            await postToChat(chat, post)
        }
        let room = fixture.room
        relay.resolve(roomId: room.id, name: room.name)
        let messages = chat.messages(in: room.id)
        let botId = fixture.bot.user.id
        // Subscribed before the body runs: a subscription started beside it could join after
        // the body's first message, and so never relay it. (Not when the chat server starts later.)
        if chatURL == nil { _ = try await chat.subscribe(to: room.id) }
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await relay.run() }
            group.addTask {
                if chatURL != nil { _ = try await chat.subscribe(to: room.id) }
                for await message in messages where message.userId != botId {
                    let sender = [fixture.ann.user.id: "ann", fixture.bob.user.id: "bob"][message.userId] ?? message.userId
                    let quote = await ReplyQuote.lookUp(for: message, client: chat)
                    _ = try await relay.relayToIRC(ChatMessageToRelay(roomId: message.roomId, roomName: room.name, senderName: sender, senderId: message.userId, content: message.content, meta: message.meta, quote: quote))
                }
            }
            defer { group.cancelAll() }
            return try await body(relay, chat)
        }
    }
}

/// What the plugin does with an IRC message: into the outbox, waiting while it is full.
func postToChat(_ chat: ChatClient, _ post: ChatPost) async {
    var logger = Logger(label: "switchboard.test.relay")
    logger.logLevel = .critical
    while !Task.isCancelled, !post.enqueue(in: chat, logger: logger) {
        try? await Task.sleep(for: .milliseconds(50))
    }
}

func network(port: Int, nick: String, channel: String, flood: FloodControl = FloodControl(burst: 10, interval: .milliseconds(20))) -> IRCNetworkConfiguration {
    var network = IRCNetworkConfiguration(name: "testnet", server: "127.0.0.1", port: port, nick: nick, mappings: [IRCMapping(room: "general", channel: channel)])
    network.tls = false
    network.floodControl = flood
    return network
}

/// A bridged room on the IRC server at `port`: an IRC user in a new channel, a chat server with
/// the fixture and Ann in its room, and a relay between them (`configure` adjusts its network)
/// that has joined the channel.
func withBridgedRoom(
    port: Int,
    configure: (inout IRCNetworkConfiguration) -> Void = { _ in },
    _ body: (RelayFixture, TestSocket, IRCTestPeer, String, NetworkRelay) async throws -> Void
) async throws {
    let channel = IRCServers.uniqueChannel()
    let user = try await IRCTestPeer.connect(port: port, nick: IRCServers.uniqueNick("irc"))
    try await user.join(channel)
    try await TestServer.withServer { server in
        let fixture = try await RelayFixture.make(server)
        let ann = try await server.connect(token: fixture.ann.token)
        try await ann.join(fixture.room.id)
        var configuration = network(port: port, nick: IRCServers.uniqueNick("rel"), channel: channel)
        configure(&configuration)
        try await withRelay(fixture, network: configuration) { relay, _ in
            _ = try await user.next(timeout: .seconds(20)) { $0.command == "JOIN" && $0.sourceNick == relay.network.nick }
            try await body(fixture, ann, user, channel, relay)
        }
    }
    await user.close()
}

extension TestSocket {
    /// The next chat message in a room, from anyone.
    func message(timeout: Duration = .seconds(20)) async throws -> Message {
        try await next("message", timeout: timeout).decode(Message.self)
    }
}

@Suite("The bridge between a chat server and real IRC servers", .serialized)
struct RelayTests {
    @Test(.timeLimit(.minutes(1)), arguments: ["ngircd", "inspircd"])
    func bothDirectionsWithActionsFormattingAndNoLoops(server ircServer: String) async throws {
        let port = try ircServer == "ngircd" ? IRCServers.ngircd() : IRCServers.inspircd()
        try await withBridgedRoom(port: port) { fixture, ann, user, channel, relay in
            // Chat → IRC, plain and /me.
            try await ann.sendMessage("hello IRC", roomId: fixture.room.id)
            #expect(try await user.privmsg(to: channel).parameters[1] == "<ann> hello IRC")
            _ = try await ann.message()
            try await ann.sendMessage("/me waves", roomId: fixture.room.id)
            #expect(try await user.privmsg(to: channel).parameters[1] == "\u{01}ACTION ann waves\u{01}")
            _ = try await ann.message()

            // IRC → chat, formatting stripped, with meta.bridge.
            try await user.send("PRIVMSG \(channel) :\u{02}bold\u{02} and \u{03}4red\u{03} text")
            let relayed = try await ann.message()
            #expect(relayed.content == "bold and red text")
            #expect(relayed.userId == fixture.bot.user.id)
            #expect(relayed.meta?["bridge"]?["network"]?.stringValue == "testnet")
            #expect(relayed.meta?["bridge"]?["channel"]?.stringValue == channel)
            #expect(relayed.meta?["bridge"]?["nick"]?.stringValue == user.nick)
            try await user.send("PRIVMSG \(channel) :\u{01}ACTION dances\u{01}")
            #expect(try await ann.message().content == "/me dances")

            // No loops: what the bridge posted is not sent back to IRC, and a message another
            // bridge of this network posted is not relayed either.
            let foreign = try await ann.request("message", roomId: fixture.room.id, data: ["content": "from elsewhere", "meta": ["bridge": ["network": "testnet", "channel": .string(channel), "nick": "x"]]])
            #expect(foreign.type == "ack")
            try await ann.sendMessage("marker", roomId: fixture.room.id)
            #expect(try await user.privmsg(to: channel).parameters[1] == "<ann> marker")
            #expect(await user.nothing(for: .milliseconds(300)) { $0.command == "PRIVMSG" } == nil)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aReplyShowsAQuoteOfTheMessageItAnswers() async throws {
        let port = try IRCServers.inspircd()
        try await withBridgedRoom(port: port) { fixture, ann, user, channel, relay in
            // A chat reply to an IRC user's message, and to a chat message.
            try await user.send("PRIVMSG \(channel) :is anyone around to help me with the failing build today?")
            let question = try await ann.message(from: fixture.bot.user.id)
            let answer = try await ann.request("message", roomId: fixture.room.id, data: ["content": "yes, me", "replyTo": .string(question.id)])
            #expect(answer.type == "ack")
            let line = try await user.privmsg(to: channel)
            #expect(line.parameters[1] == "<ann> (re \(user.nick!): is anyone around to help me with the failing build…) yes, me")
            #expect(line.wireSize <= 512)
            let own = try answer.decode(MessageAck.self).message
            try await ann.request("message", roomId: fixture.room.id, data: ["content": "/me agrees", "replyTo": .string(own.id)])
            #expect(try await user.privmsg(to: channel).parameters[1] == "\u{01}ACTION ann (re ann: yes, me) agrees\u{01}")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func puppetsAppearSpeakAndLeaveWhenIdle() async throws {
        let port = try IRCServers.inspircd()
        // A suffix of the test's own, so that puppets of tests before cannot collide.
        let suffix = "[" + IRCServers.uniqueNick("").suffix(4) + "]"
        try await withBridgedRoom(port: port, configure: { configuration in
            configuration.puppets = PuppetOptions(enabled: true, limit: 1, suffix: suffix, idleTimeout: .seconds(2))
            configuration.relay.membership = true  // and yet the puppets' joins and quits are not relayed
        }) { fixture, ann, user, channel, relay in
            let bob = try await fixture.server.connect(token: fixture.bob.token)
            // Ann's puppet joins and speaks as itself, twice over one connection.
            try await ann.sendMessage("hello as myself", roomId: fixture.room.id)
            let puppet = "ann" + suffix
            _ = try await user.next(timeout: .seconds(20)) { $0.command == "JOIN" && $0.sourceNick == puppet }
            var line = try await user.privmsg(to: channel)
            #expect(line.sourceNick == puppet && line.parameters[1] == "hello as myself")
            try await ann.sendMessage("/me waves", roomId: fixture.room.id)
            line = try await user.privmsg(to: channel)
            #expect(line.sourceNick == puppet && line.parameters[1] == "\u{01}ACTION waves\u{01}")
            #expect(relay.isOwn(nick: puppet.uppercased()))

            // Past the limit of one, Bob speaks through the relay nick.
            try await bob.sendMessage("over the limit", roomId: fixture.room.id)
            line = try await user.privmsg(to: channel)
            #expect(line.sourceNick == relay.network.nick && line.parameters[1] == "<bob> over the limit")

            // IRC addresses the puppet: that reaches chat; the puppet's own lines never came back.
            try await user.send("PRIVMSG \(channel) :\(puppet): welcome")
            #expect(try await ann.message(from: fixture.bot.user.id).content == "\(puppet): welcome")

            // Quiet for two seconds: it quits.
            let quit = try await user.next(timeout: .seconds(15)) { $0.command == "QUIT" && $0.sourceNick == puppet }
            #expect(quit.parameters.last?.contains("idle") == true)
            // Ann speaks again: a new puppet joins.
            try await ann.sendMessage("back", roomId: fixture.room.id)
            _ = try await user.next(timeout: .seconds(20)) { $0.command == "JOIN" && $0.sourceNick == puppet }
            line = try await user.privmsg(to: channel)
            #expect(line.sourceNick == puppet && line.parameters[1] == "back")
            let relayed = try? await ann.message(from: fixture.bot.user.id, timeout: .milliseconds(500))
            #expect(relayed == nil)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func puppetsSpeakAgainWhenTheRelayRunsASecondTime() async throws {
        // The puppets' start requests once came through one stream made with the relay, which
        // ended with the first run; and the first run's puppets stayed, their connections gone.
        let port = try IRCServers.inspircd()
        let channel = IRCServers.uniqueChannel()
        let user = try await IRCTestPeer.connect(port: port, nick: IRCServers.uniqueNick("irc"))
        try await user.join(channel)
        let suffix = "[" + IRCServers.uniqueNick("").suffix(4) + "]"
        var configuration = network(port: port, nick: IRCServers.uniqueNick("rel"), channel: channel)
        configuration.puppets = PuppetOptions(enabled: true, limit: 1, suffix: suffix)
        var logger = Logger(label: "switchboard.test.relay")
        logger.logLevel = .critical
        let relay = NetworkRelay(network: configuration, logger: logger, backoff: ReconnectBackoff(initial: .milliseconds(200), maximum: .seconds(1))) { _ in }
        relay.resolve(roomId: "room-1", name: "general")
        let puppet = "ann" + suffix
        let nick = configuration.nick
        for run in 1...2 {
            let running = Task { try await relay.run() }
            _ = try await user.next(timeout: .seconds(20)) { $0.command == "JOIN" && $0.sourceNick == nick }
            try await relay.relayToIRC(ChatMessageToRelay(roomId: "room-1", roomName: "general", senderName: "ann", senderId: "user-ann", content: "run \(run)"))
            _ = try await user.next(timeout: .seconds(20)) { $0.command == "JOIN" && $0.sourceNick == puppet }
            let line = try await user.privmsg(to: channel)
            #expect(line.sourceNick == puppet && line.parameters[1] == "run \(run)")
            running.cancel()
            _ = try? await running.value
            _ = try await user.next(timeout: .seconds(20)) { $0.command == "QUIT" && $0.sourceNick == puppet }
            _ = try await user.next(timeout: .seconds(20)) { $0.command == "QUIT" && $0.sourceNick == nick }
        }
        await user.close()
    }

    @Test(.timeLimit(.minutes(1)))
    func longAndMultiLineMessagesAreSplitAndCut() async throws {
        let port = try IRCServers.inspircd()
        try await withBridgedRoom(port: port, configure: { configuration in
            configuration.format = RelayFormat(maxLines: 4)
        }) { fixture, ann, user, channel, relay in
            // 1200 bytes of two-byte letters with emoji at the edges: three lines, nothing lost.
            let long = "🎉" + String(repeating: "ß", count: 600) + "👍🏾"
            try await ann.sendMessage(long, roomId: fixture.room.id)
            var pieces: [String] = []
            while pieces.joined().utf8.count < long.utf8.count {
                let line = try await user.privmsg(to: channel)
                #expect(line.wireSize <= 512)
                #expect(line.parameters[1].hasPrefix("<ann> "))
                pieces.append(String(line.parameters[1].dropFirst(6)))
            }
            #expect(pieces.joined() == long)
            #expect(pieces.count == 3)

            // Six lines with a limit of four: three, then a note.
            try await ann.sendMessage("1\n2\n3\n4\n5\n6", roomId: fixture.room.id)
            var lines: [String] = []
            for _ in 0..<4 { lines.append(try await user.privmsg(to: channel).parameters[1]) }
            #expect(lines == ["<ann> 1", "<ann> 2", "<ann> 3", "<ann> [3 more lines not shown]"])
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func chatServerRestartedMidConversation() async throws {
        let port = try IRCServers.ngircd()
        let channel = IRCServers.uniqueChannel()
        let user = try await IRCTestPeer.connect(port: port, nick: IRCServers.uniqueNick("irc"))
        try await user.join(channel)
        let database = try TestServer.temporaryDatabasePath()
        let outbox = FileManager.default.temporaryDirectory.appendingPathComponent("relay-\(UUID().uuidString).outbox").path
        try await TCPProxy.withProxy { proxy in
            let fixture = try await TestServer.withServer(databasePath: database) { try await RelayFixture.make($0) }
            try await withRelay(fixture, network: network(port: port, nick: IRCServers.uniqueNick("rel"), channel: channel), chatURL: proxy.baseURL, outboxFile: outbox) { relay, chat in
                _ = try await user.next(timeout: .seconds(20)) { $0.command == "JOIN" && $0.sourceNick == relay.network.nick }
                try await TestServer.withServer(databasePath: database) { server in
                    proxy.setTarget(port: server.port)
                    let ann = try await server.connect(token: fixture.ann.token)
                    try await ann.join(fixture.room.id)
                    try await user.send("PRIVMSG \(channel) :before")
                    #expect(try await ann.message(timeout: .seconds(20)).content == "before")
                    try await ann.sendMessage("chat before", roomId: fixture.room.id)
                    #expect(try await user.privmsg(to: channel).parameters[1] == "<ann> chat before")
                }
                // Chat is down: what IRC says meanwhile waits in the outbox file.
                proxy.setTarget(port: nil)
                proxy.cutAll()
                for number in 1...10 { try await user.send("PRIVMSG \(channel) :while chat is down \(number)") }
                try await waitUntil { chat.pendingMessages.count == 10 }
                try await TestServer.withServer(databasePath: database) { server in
                    proxy.setTarget(port: server.port)
                    let ann = try await server.connect(token: fixture.ann.token)
                    try await ann.join(fixture.room.id)
                    for number in 1...10 {
                        #expect(try await ann.message(timeout: .seconds(20)).content == "while chat is down \(number)")
                    }
                    try await ann.sendMessage("chat after", roomId: fixture.room.id)
                    #expect(try await user.privmsg(to: channel).parameters[1] == "<ann> chat after")
                    #expect(await user.nothing(for: .milliseconds(300)) { $0.command == "PRIVMSG" } == nil)
                }
            }
        }
        await user.close()
    }
}
