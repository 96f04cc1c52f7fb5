import AsyncHTTPClient
import Foundation
import NIOPosix
import SwitchboardClient
import SwitchboardProtocol
import SwitchboardTesting
import Testing

/// What a bot or a bridge needs of the client: shared HTTP clients, following every room, knowing when
/// it has caught up, resuming where it left off, and knowing who wrote what.
@Suite("The client as bots use it", .timeLimit(.minutes(1)))
struct BotTests {
    @Test("clients share one HTTPClient and event-loop group; it outlives them, and they do not shut it down")
    func sharedHTTPClient() async throws {
        try await TestServer.withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("general", token: alice.token, members: [bob.user.id])
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let http = HTTPClient(eventLoopGroupProvider: .shared(group))
            try await ChatClient.withClient(
                configuration: testConfiguration(server.baseURL, token: bob.token), httpClient: http, logger: testLogger("bob")
            ) { bobClient in
                let subscription = try await bobClient.subscribe(to: room.id)
                try await ChatClient.withClient(
                    configuration: testConfiguration(server.baseURL, token: alice.token), httpClient: http, eventLoopGroup: group,
                    logger: testLogger("alice")
                ) { aliceClient in
                    let sent = try await aliceClient.send("shared", to: room.id)
                    #expect(try await collect(subscription.messages, count: 1) == [sent])
                }
                // Alice's client stopped; the HTTP client it shared still works for Bob's.
                #expect(try await bobClient.rooms().map(\.room.id) == [room.id])
            }
            // Both stopped, and neither shut the shared client down.
            let answer = try await http.execute(HTTPClientRequest(url: server.baseURL + "/healthz"), timeout: .seconds(5))
            #expect(answer.status == .ok)
            try await http.shutdown()
            try await group.shutdownGracefully()
        }
    }

    @Test("following every room: the rooms of the user, then a room made later and a first direct message, each from its first message")
    func followAllRooms() async throws {
        try await TestServer.withServer { server in
            let alice = try await server.register("alice")
            let bot = try await server.register("bot")
            let first = try await server.createRoom("first", token: alice.token, members: [bot.user.id])
            let second = try await server.createRoom("second", token: alice.token, members: [bot.user.id])
            let socket = try await server.connect(token: alice.token)
            try await socket.sendMessage("before the bot started", roomId: first.id)
            try await ChatClient.withClient(configuration: testConfiguration(server.baseURL, token: bot.token), logger: testLogger("bot")) { client in
                let events = client.followAllRooms()
                // Ready once both rooms are joined and caught up: nothing from before the start is handed over.
                let start = try await collect(events) { $0.contains { if case .ready = $0 { true } else { false } } }
                #expect(Set(start.compactMap { if case .caughtUp(let roomId, _) = $0 { roomId } else { nil } }) == [first.id, second.id])
                #expect(start.allSatisfy { if case .message = $0 { false } else { true } })
                #expect(Set(client.subscribedRooms) == [first.id, second.id])

                try await socket.sendMessage("in first", roomId: first.id)
                try await socket.sendMessage("in second", roomId: second.id)
                // A room made later with the bot in it, and a message right after.
                let later = try await server.createRoom("later", token: alice.token, members: [bot.user.id])
                try await socket.sendMessage("first words in later", roomId: later.id)
                // A direct room that starts with a message.
                let direct = try await server.request(.POST, "/api/dms", token: alice.token, json: ["userId": bot.user.id]).decode(RoomResponse.self).room
                try await socket.sendMessage("hello bot", roomId: direct.id)

                let seen = try await collect(events) { events in
                    events.compactMap { if case .message(let message) = $0 { message } else { nil } }.count >= 4
                }
                let messages = seen.compactMap { if case .message(let message) = $0 { message } else { nil } }
                #expect(Set(messages.map(\.content)) == ["in first", "in second", "first words in later", "hello bot"])
                #expect(messages.allSatisfy { !client.isOwn($0) })
                #expect(Set(client.subscribedRooms) == [first.id, second.id, later.id, direct.id])
            }
            await socket.close()
        }
    }

    @Test("a persisted position: a restarted bot resumes after the last message it handled, not the last it received")
    func positions() async throws {
        try await TestServer.withServer { server in
            let alice = try await server.register("alice")
            let bot = try await server.register("bot")
            let room = try await server.createRoom("general", token: alice.token, members: [bot.user.id])
            let socket = try await server.connect(token: alice.token)
            let store = MemoryPositionStore()
            let configuration = testConfiguration(server.baseURL, token: bot.token) { $0.positions = store }
            try await ChatClient.withClient(configuration: configuration, logger: testLogger("bot-1")) { client in
                let events = client.followAllRooms()
                _ = try await collect(events) { $0.contains { if case .ready = $0 { true } else { false } } }
                for index in 1...3 { try await socket.sendMessage("m\(index)", roomId: room.id) }
                let received = try await collect(events) { events in
                    events.filter { if case .message = $0 { true } else { false } }.count == 3
                }
                // Only the first two were handled when the process "died".
                for case .message(let message) in received where message.seq <= 2 { try await client.markHandled(message) }
                #expect(client.lastSeq(in: room.id) == 3)
            }
            #expect(store.all == [room.id: 2])
            try await socket.sendMessage("m4 while the bot was down", roomId: room.id)
            try await ChatClient.withClient(configuration: configuration, logger: testLogger("bot-2")) { client in
                let events = client.followAllRooms()
                let again = try await collect(events) { $0.contains { if case .ready = $0 { true } else { false } } }
                let messages = again.compactMap { if case .message(let message) = $0 { message } else { nil } }
                #expect(messages.map(\.seq) == [3, 4])
                // subscribe without `after` starts from the stored position too.
                await client.unsubscribe(from: room.id)
                try await client.markHandled(room: room.id, seq: 4)
                let subscription = try await client.subscribe(to: room.id)
                try await socket.sendMessage("m5", roomId: room.id)
                #expect(try await collect(subscription.messages, count: 1).map(\.seq) == [5])
            }
            await socket.close()
        }
    }

    @Test("after a reconnection each room says it caught up again, then ready; own messages are flagged")
    func caughtUpAfterReconnect() async throws {
        try await TestServer.withServer { server in
            let alice = try await server.register("alice")
            let bot = try await server.register("bot")
            let room = try await server.createRoom("general", token: alice.token, members: [bot.user.id])
            let socket = try await server.connect(token: alice.token)
            try await TCPProxy.withProxy(targetPort: server.port) { proxy in
                try await ChatClient.withClient(configuration: testConfiguration(proxy.baseURL, token: bot.token), logger: testLogger("bot")) { client in
                    let events = client.followAllRooms()
                    _ = try await collect(events) { $0.contains { if case .ready = $0 { true } else { false } } }
                    let mine = try await client.send("mine", to: room.id)
                    #expect(client.isOwn(mine))
                    proxy.setTarget(port: nil)
                    proxy.cutAll()
                    try await client.waitForStatus { if case .reconnecting = $0 { true } else { false } }
                    try await socket.sendMessage("missed", roomId: room.id)
                    proxy.setTarget(port: server.port)
                    let after = try await collect(events) { $0.contains { if case .ready = $0 { true } else { false } } }
                    let order = after.compactMap { event -> String? in
                        switch event {
                        case .message(let message): message.content
                        case .caughtUp(let roomId, let seq): "caughtUp \(roomId == room.id) \(seq)"
                        case .ready: "ready"
                        default: nil
                        }
                    }
                    #expect(order == ["mine", "missed", "caughtUp true 2", "ready"])
                    #expect(client.cachedUser(id: bot.user.id)?.username == "bot")
                }
            }
            await socket.close()
        }
    }

    @Test("the directory learns users from join events; members from the join ack")
    func directory() async throws {
        try await TestServer.withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("general", token: alice.token, members: [bob.user.id])
            try await ChatClient.withClient(configuration: testConfiguration(server.baseURL, token: alice.token), logger: testLogger("alice")) { client in
                let joins = client.events()
                try await client.subscribe(to: room.id)
                #expect(client.members(of: room.id) == [alice.user.id, bob.user.id])
                #expect(client.cachedUser(id: bob.user.id) == nil)
                let bobSocket = try await server.connect(token: bob.token)
                try await bobSocket.join(room.id)
                _ = try await collect(joins) { $0.contains { if case .memberJoined = $0 { true } else { false } } }
                #expect(client.cachedUser(id: bob.user.id)?.username == "bob")
                // Known: no request needed.
                #expect(try await client.user(id: bob.user.id).id == bob.user.id)
                await bobSocket.close()
            }
        }
    }
}
