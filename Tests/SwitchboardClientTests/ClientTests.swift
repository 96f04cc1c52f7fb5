import Foundation
import SwitchboardClient
import SwitchboardProtocol
import SwitchboardTesting
import Testing

@Suite("The client against a real server", .timeLimit(.minutes(1)))
struct ClientTests {
    @Test("send returns the stored message; a subscriber gets it, typing, a reaction and presence")
    func sendAndReceive() async throws {
        try await TestServer.withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("general", token: alice.token, members: [bob.user.id])
            try await ChatClient.withClient(configuration: testConfiguration(server.baseURL, token: bob.token), logger: testLogger("bob")) { bobClient in
                let joined = try await bobClient.subscribe(to: room.id)
                #expect(joined.id == room.id)
                #expect(bobClient.status == .connected)
                #expect(bobClient.currentUser?.username == "bob")
                let bobMessages = bobClient.messages(in: room.id)
                let bobTyping = bobClient.typing(in: room.id)
                let bobReactions = bobClient.reactions(in: room.id)
                let bobPresence = bobClient.presence()

                try await ChatClient.withClient(configuration: testConfiguration(server.baseURL, token: alice.token), logger: testLogger("alice")) { aliceClient in
                    try await aliceClient.subscribe(to: room.id)
                    let presence = try await collect(bobPresence, count: 1)
                    #expect(presence.first == PresenceEvent(userId: alice.user.id, status: .online))

                    let sent = try await aliceClient.send("  hello bob  ", to: room.id, meta: ["bridge": "test"])
                    #expect(sent.content == "hello bob")
                    #expect(sent.seq == 1)
                    #expect(sent.meta?["bridge"]?.stringValue == "test")
                    let received = try await collect(bobMessages, count: 1)
                    #expect(received == [sent])

                    #expect(await aliceClient.sendTyping(true, in: room.id))
                    let typing = try await collect(bobTyping, count: 1)
                    #expect(typing.first == TypingEvent(roomId: room.id, userId: alice.user.id, isTyping: true))

                    let counts = try await aliceClient.react("👍", to: sent.id, in: room.id)
                    #expect(counts == ["👍": 1])
                    let reaction = try await collect(bobReactions, count: 1)
                    #expect(reaction.first?.reactions == ["👍": 1])
                    #expect(reaction.first?.userId == alice.user.id)
                }
            }
        }
    }

    @Test("a password login works; HTTP helpers list rooms, find users and open a direct room")
    func passwordAndHTTP() async throws {
        try await TestServer.withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            _ = try await server.createRoom("general", token: alice.token)
            var configuration = testConfiguration(server.baseURL, token: "")
            configuration.credentials = .password(username: "alice", password: "password123")
            try await ChatClient.withClient(configuration: configuration, logger: testLogger("alice")) { client in
                try await client.waitForStatus { $0 == .connected }
                #expect(client.currentUser?.id == alice.user.id)
                let rooms = try await client.rooms()
                #expect(rooms.map(\.room.name) == ["general"])
                let found = try await client.users(matching: "bo")
                #expect(found.map(\.id) == [bob.user.id])
                let direct = try await client.directRoom(with: bob.user.id)
                #expect(direct.kind == .direct)
                #expect(Set(direct.members) == [alice.user.id, bob.user.id])
                let message = try await client.send("hi", to: direct.id)
                let history = try await client.history(in: direct.id)
                #expect(history.messages == [message])
            }
        }
    }

    @Test("listeners get events until their token is cancelled")
    func listeners() async throws {
        try await TestServer.withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("general", token: alice.token)
            try await ChatClient.withClient(configuration: testConfiguration(server.baseURL, token: alice.token), logger: testLogger("alice")) { client in
                try await client.subscribe(to: room.id)
                let heard = Locked<[String]>([])
                let (heardStream, heardContinuation) = AsyncStream.makeStream(of: String.self)
                let token = client.onMessage(in: room.id) { message in
                    heard.update { $0.append(message.content) }
                    heardContinuation.yield(message.content)
                }
                let all = client.messages(in: room.id)
                try await client.send("one", to: room.id)
                // A listener runs on a task of its own: wait until it has had "one".
                _ = try await collect(heardStream, count: 1)
                token.cancel()
                #expect(token.isCancelled)
                try await client.send("two", to: room.id)
                // The stream saw "two" after the cancel, which dropped the listener's queue.
                _ = try await collect(all, count: 2)
                #expect(heard.get() == ["one"])
            }
        }
    }

    @Test("what is sent while the server is unreachable is queued, then stored once each, in order")
    func offlineQueue() async throws {
        try await TestServer.withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("general", token: alice.token)
            try await TCPProxy.withProxy { proxy in
                try await ChatClient.withClient(configuration: testConfiguration(proxy.baseURL, token: alice.token), logger: testLogger("alice")) { client in
                    try await client.waitForStatus {
                        if case .reconnecting = $0 { return true }
                        return false
                    }
                    for index in 1...5 { try client.enqueue("queued \(index)", to: room.id) }
                    #expect(client.pendingMessages.count == 5)
                    let sent = client.events()
                    proxy.setTarget(port: server.port)
                    let stored = try await collect(sent) { events in
                        events.filter { if case .messageSent = $0 { return true } else { return false } }.count == 5
                    }
                    let messages = stored.compactMap { event -> Message? in
                        if case .messageSent(let message) = event { return message }
                        return nil
                    }
                    #expect(messages.map(\.content) == (1...5).map { "queued \($0)" })
                    try expectContiguous(messages)
                    #expect(client.pendingMessages.isEmpty)
                }
            }
        }
    }

    @Test("rate-limited sends are waited out and retried, in order, each stored once")
    func rateLimited() async throws {
        let configuration = TestServer.testConfiguration {
            $0.messagesPerSecond = 20
            $0.messageBurst = 3
        }
        try await TestServer.withServer(configuration: configuration) { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("general", token: alice.token)
            try await ChatClient.withClient(
                configuration: testConfiguration(server.baseURL, token: alice.token) { $0.outbox.maxInFlight = 4 },
                logger: testLogger("alice")
            ) { client in
                try await client.waitForStatus { $0 == .connected }
                let results = try await withThrowingTaskGroup(of: Message.self) { group in
                    for index in 1...12 {
                        let clientId = "rate-\(index)"
                        try client.enqueue("message \(index)", to: room.id, clientId: clientId)
                    }
                    group.addTask { try await client.send("message 13", to: room.id) }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                #expect(results.first?.content == "message 13")
                let history = try await client.history(in: room.id, limit: 100)
                #expect(history.messages.count == 13)
                #expect(Set(history.messages.map(\.content)).count == 13)
            }
        }
    }

    @Test("disconnect reports what could not be sent, and waiting senders fail with shutdown")
    func disconnectReports() async throws {
        try await TCPProxy.withProxy { proxy in
            let configuration = testConfiguration(proxy.baseURL, token: "sb_unused") { $0.shutdownFlushTimeout = .milliseconds(200) }
            let client = try ChatClient(configuration: configuration, logger: testLogger("offline"))
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await client.run() }
                group.addTask {
                    await #expect(throws: ClientError.self) { try await client.send("never", to: "r1") }
                }
                try client.enqueue("also never", to: "r1")
                while client.pendingMessages.count < 2 { await Task.yield() }
                let report = await client.disconnect()
                #expect(report.unsent.map(\.content).sorted() == ["also never", "never"])
                #expect(!report.keptInFile)
                #expect(client.status == .disconnected)
                try await group.waitForAll()
            }
            await #expect(throws: ClientError.self) { try await client.send("after", to: "r1") }
        }
    }

    @Test("the outbox file makes a restarted process send what the last one could not, once")
    func outboxFile() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("outbox-\(UUID().uuidString).json").path
        try await TestServer.withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("general", token: alice.token)
            try await TCPProxy.withProxy { proxy in
                let offline = testConfiguration(proxy.baseURL, token: alice.token) {
                    $0.outbox.file = file
                    $0.shutdownFlushTimeout = .milliseconds(100)
                }
                let report = try await ChatClient.withClient(configuration: offline, logger: testLogger("first")) { client in
                    for index in 1...3 { try client.enqueue("kept \(index)", to: room.id) }
                    return await client.disconnect()
                }
                #expect(report.unsent.count == 3)
                #expect(report.keptInFile)
            }
            let online = testConfiguration(server.baseURL, token: alice.token) { $0.outbox.file = file }
            try await ChatClient.withClient(configuration: online, logger: testLogger("second")) { client in
                #expect(client.pendingMessages.map(\.content) == ["kept 1", "kept 2", "kept 3"])
                let events = client.events()
                _ = try await collect(events) { events in
                    events.filter { if case .messageSent = $0 { return true } else { return false } }.count == 3
                }
            }
            // A third process has nothing left to send, and the server holds each message once.
            try await ChatClient.withClient(configuration: online, logger: testLogger("third")) { client in
                #expect(client.pendingMessages.isEmpty)
                let history = try await client.history(in: room.id)
                #expect(history.messages.map(\.content) == ["kept 1", "kept 2", "kept 3"])
            }
        }
    }

    @Test("a refused message fails its sender and does not block the ones after it")
    func refusedMessage() async throws {
        try await TestServer.withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("general", token: alice.token)
            let bobsRoom = try await server.createRoom("private", token: bob.token)
            try await ChatClient.withClient(configuration: testConfiguration(server.baseURL, token: alice.token), logger: testLogger("alice")) { client in
                await #expect {
                    try await client.send("not mine", to: bobsRoom.id)
                } throws: { error in
                    (error as? ClientError)?.code == .forbidden
                }
                await #expect {
                    try await client.subscribe(to: bobsRoom.id)
                } throws: { error in
                    (error as? ClientError)?.code == .forbidden
                }
                #expect(client.subscribedRooms.isEmpty)
                let next = try await client.send("mine", to: room.id)
                #expect(next.seq == 1)
                #expect(throws: ClientError.self) { try client.enqueue("   ", to: room.id) }
            }
        }
    }
}
