import Foundation
import Logging
import SwitchboardProtocol
import SwitchboardStore
import SwitchboardTesting
import Testing

@testable import SwitchboardClient

/// The client's queues are bounded with a policy per event; and the defects of issue 8, each with its regression test.
@Suite("Bounded buffers and the client's defects", .timeLimit(.minutes(1)))
struct BoundsTests {
    // MARK: EventQueue

    @Test("a lossless push waits while the queue is full, and goes on when the reader takes one")
    func losslessWaits() async throws {
        let queue = EventQueue<Int>(capacity: 2, lossyCapacity: 2)
        await queue.push(1, lossy: false)
        await queue.push(2, lossy: false)
        #expect(queue.isFull)
        let pushed = Locked(false)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                await queue.push(3, lossy: false)
                pushed.set(true)
            }
            #expect(pushed.get() == false)
            #expect(await queue.next() == 1)
            try await group.waitForAll()
        }
        #expect(pushed.get())
        #expect(await queue.next() == 2)
        #expect(await queue.next() == 3)
    }

    @Test("while overflow is allowed a producer waiting for space goes on, up to the overflow capacity")
    func overflowWhileAnswersAreAwaited() async throws {
        let queue = EventQueue<Int>(capacity: 2, lossyCapacity: 2, overflowCapacity: 4)
        queue.pushNow(1)
        queue.pushNow(2)
        #expect(queue.isFull && queue.isBeyondCapacity)
        let waited = Task { await queue.waitForSpace() }
        queue.allowOverflow(true)
        try await withTimeout(.seconds(5)) { await waited.value }
        #expect(!queue.isFull)
        queue.pushNow(3)
        queue.pushNow(4)
        #expect(queue.isFull)
        // Back to the capacity: full until the reader takes three.
        queue.allowOverflow(false)
        for expected in 1...2 { #expect(await queue.next() == expected) }
        #expect(queue.isFull)
        #expect(await queue.next() == 3)
        #expect(!queue.isFull)
    }

    @Test("a lossy push never waits: past the bound the oldest lossy element goes, lossless ones stay")
    func lossyKeepsNewest() async {
        let queue = EventQueue<String>(capacity: 10, lossyCapacity: 2)
        await queue.push("message", lossy: false)
        for index in 1...5 { await queue.push("typing \(index)", lossy: true) }
        queue.finish()
        var all: [String] = []
        while let next = await queue.next() { all.append(next) }
        #expect(all == ["message", "typing 4", "typing 5"])
    }

    @Test("a dropped stream closes its queue: a waiting producer goes on and nothing more is kept")
    func droppedStreamCloses() async {
        let queue = EventQueue<Int>(capacity: 1, lossyCapacity: 1)
        do {
            let stream = queue.stream()
            _ = stream
        }
        #expect(queue.isClosed)
        await queue.push(1, lossy: false)
        await queue.push(2, lossy: false)
        #expect(!queue.isFull)
    }

    // MARK: Streams against a server

    @Test("a stream that is not read holds the client up without losing a message; typing keeps only the newest")
    func backPressure() async throws {
        // The server ends a typing indicator by itself after `typingExpiry` (6 s by default) with an
        // automatic `isTyping: false`: under load, collecting the 20 messages took longer than that,
        // and that `false` became the newest typing event ([true, false] instead of [false, true]).
        // Here the three typings sent are the only ones.
        try await TestServer.withServer(configuration: TestServer.testConfiguration { $0.typingExpiry = .seconds(600) }) { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("general", token: alice.token, members: [bob.user.id])
            let configuration = testConfiguration(server.baseURL, token: bob.token) {
                $0.eventBuffers.messages = 4
                $0.eventBuffers.live = 2
            }
            try await ChatClient.withClient(configuration: configuration, logger: testLogger("bob")) { client in
                let subscription = try await client.subscribe(to: room.id)
                let typing = client.typing(in: room.id)
                // A listener, on a task of its own, alongside.
                let heard = Locked(0)
                let token = client.onMessage(in: room.id) { _ in heard.update { $0 += 1 } }
                defer { token.cancel() }
                let socket = try await server.connect(token: alice.token)
                try await socket.join(room.id)
                // One at a time (each acked), so that the server hands them on in this order.
                for index in 1...3 { _ = try await socket.request("typing", roomId: room.id, data: ["isTyping": .bool(index % 2 == 1)]) }
                for index in 1...20 { try await socket.sendMessage("m\(index)", roomId: room.id) }
                // Nothing lost, in order, though the stream held at most 4 at a time.
                let messages = try await collect(subscription.messages, count: 20)
                #expect(messages.map(\.content) == (1...20).map { "m\($0)" })
                // The typing stream, never read so far, kept the newest two of three.
                let typings = try await collect(typing, count: 2)
                #expect(typings.map(\.isTyping) == [false, true])
                await socket.close()
            }
        }
    }

    @Test("the README's example, as written: a replayed ping is answered, since the stream exists before the join")
    func readmeExample() async throws {
        try await TestServer.withServer { server in
            let alice = try await server.register("alice")
            let bot = try await server.register("bot")
            let roomId = try await server.createRoom("general", token: alice.token, members: [bot.user.id]).id
            let socket = try await server.connect(token: alice.token)
            try await socket.sendMessage("ping", roomId: roomId)
            let token = bot.token
            let lastHandled = 0
            let served = Task {
                // From the README, unchanged but for the server's address.
                var configuration = ClientConfiguration(server: "http://127.0.0.1:3001", credentials: .token(token))
                configuration.server = server.baseURL
                try await ChatClient.withClient(configuration: configuration) { client in
                    let room = try await client.subscribe(to: roomId, after: lastHandled)   // replays what came since
                    for await message in room.messages where message.content == "ping" {
                        try await client.send("pong", to: room.id, replyTo: message.id)   // returns once stored
                        return
                    }
                }
            }
            try await socket.join(roomId)
            let pong = try await socket.next { $0.type == "message" && $0.data?["content"]?.stringValue == "pong" }
            #expect(pong.data?["seq"] == 2)
            try await served.value
            await socket.close()
        }
    }

    // MARK: Defects of issue 8

    @Test("a message over the server's frame limit but under maxMessageBytes fails once, and the next one goes")
    func closedWith1009() async throws {
        let serverConfiguration = TestServer.testConfiguration { $0.limits.maxFrameBytes = 2048 }
        try await TestServer.withServer(configuration: serverConfiguration) { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("general", token: alice.token)
            try await ChatClient.withClient(configuration: testConfiguration(server.baseURL, token: alice.token), logger: testLogger("alice")) { client in
                try await client.waitForStatus { $0 == .connected }
                await #expect {
                    try await client.send(String(repeating: "x", count: 3000), to: room.id)
                } throws: { error in
                    (error as? ClientError)?.code == .invalid && (error as? ClientError)?.message.contains("1009") == true
                }
                let next = try await client.send("small", to: room.id)
                #expect(next.seq == 1)
                #expect(client.pendingMessages.isEmpty)
            }
        }
    }

    @Test("a client with a password logs in again when its session token is revoked or expires, and goes on")
    func passwordLogsInAgain() async throws {
        try await TestServer.withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("general", token: alice.token)
            let configuration = testConfiguration(server.baseURL, token: "") {
                $0.credentials = .password(username: "alice", password: "password123")
            }
            try await ChatClient.withClient(configuration: configuration, logger: testLogger("alice")) { client in
                let subscription = try await client.subscribe(to: room.id)
                let statuses = client.statusUpdates()
                // Every token of the user ends, the client's session among them, as when it expires.
                let store = try await TestDatabase.selected.openStore(server.databasePath, logger: testLogger("store"))
                let now = Int(Date().timeIntervalSince1970 * 1000)
                for token in try await store.tokens(userId: alice.user.id) {
                    _ = try await store.revokeToken(id: token.id, ownerId: nil, now: now)
                }
                try await store.close()
                let seen = try await collect(statuses) { seen in
                    seen.contains { if case .reconnecting = $0 { true } else { false } } && seen.last == .connected
                }
                #expect(!seen.contains { $0.isFinal })
                let sent = try await client.send("still here", to: room.id)
                #expect(try await collect(subscription.messages, count: 1) == [sent])
            }
        }
    }

    @Test("send and subscribe give up after deliveryTimeout while offline; a message never sent can be withdrawn")
    func deliveryTimeout() async throws {
        try await TCPProxy.withProxy { proxy in
            let configuration = testConfiguration(proxy.baseURL, token: "sb_whoever") {
                $0.deliveryTimeout = .milliseconds(300)
                $0.shutdownFlushTimeout = .zero
            }
            try await ChatClient.withClient(configuration: configuration, logger: testLogger("offline")) { client in
                await #expect {
                    try await client.send("later", to: "r1", clientId: "c-1")
                } throws: { error in
                    (error as? ClientError)?.code == .timeout
                }
                #expect(client.pendingMessages.map(\.clientId) == ["c-1"])
                #expect(client.withdraw("c-1"))
                #expect(client.pendingMessages.isEmpty)
                await #expect {
                    try await client.subscribe(to: "r1")
                } throws: { error in
                    (error as? ClientError)?.code == .timeout
                }
                #expect(client.subscribedRooms.isEmpty)
            }
        }
    }

    @Test("a stale join ack does not mark a newer subscription of the same room as joined")
    func staleJoinAck() throws {
        let client = try ChatClient(configuration: testConfiguration("http://127.0.0.1:9", token: "sb_x"), logger: testLogger("stale"))
        client.withState { state in
            state.subscriptions.rooms["r1"] = ChatClient.RoomState(timeline: RoomTimeline(), generation: 2)
        }
        let room = Room(id: "r1", name: "r1", kind: .group, isPublic: false, createdAt: 0, lastSeq: 5, members: [])
        client.joined(room, lastSeq: 5, link: 1, generation: 1)
        #expect(client.state.withLock { $0.subscriptions.rooms["r1"]?.joinedOn } == nil)
        client.joined(room, lastSeq: 5, link: 1, generation: 2)
        #expect(client.state.withLock { $0.subscriptions.rooms["r1"]?.joinedOn } == 1)
    }

    @Test("an error code this library does not know settles its request as a final error")
    func unknownErrorCode() throws {
        let client = try ChatClient(configuration: testConfiguration("http://127.0.0.1:9", token: "sb_x"), logger: testLogger("codes"))
        client.withState { $0.requests.pending["c1"] = ChatClient.PendingRequest(link: 1, kind: .awaiting) }
        let frame = #"{"type":"error","ref":"c1","data":{"code":"brand_new","message":"a newer server says no"},"timestamp":1}"#
        client.handleFrame(Array(frame.utf8), link: 1)
        let answer = client.state.withLock { state -> ClientError? in
            guard case .answered(.failure(let error))? = state.requests.pending["c1"]?.kind else { return nil }
            return error
        }
        #expect(answer?.code == .refused)
        #expect(answer?.isTransient == false)
        #expect(answer?.message.contains("brand_new") == true)
        #expect(answer?.protocolError?.code == ErrorCode(rawValue: "brand_new"))
    }

    @Test("a 401 on a history page during recovery asks for the page again, rather than stall the room")
    func unauthorizedHistoryPage() async throws {
        try await TestServer.withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("general", token: alice.token)
            let client = try ChatClient(configuration: testConfiguration(server.baseURL, token: "sb_expired"), logger: testLogger("expired"))
            client.withState { state in
                var timeline = RoomTimeline(after: 0)
                _ = timeline.joined(lastSeq: 3)
                state.subscriptions.rooms[room.id] = ChatClient.RoomState(timeline: timeline, generation: 1)
            }
            #expect(client.state.withLock { $0.subscriptions.rooms[room.id]?.timeline.fetching } == true)
            await client.fetch(ChatClient.FetchRequest(roomId: room.id, after: 0, delay: nil))
            let again = try await collect(client.fetches, count: 1, timeout: .seconds(5)).first
            #expect(again?.roomId == room.id)
            #expect(again?.after == 0)
            #expect(again?.attempt == 1)
        }
    }

    @Test("a member event is handed over and kept in the directory; a removed self ends the subscription at once")
    func memberEvents() async throws {
        try await TestServer.withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("general", token: alice.token, members: [bob.user.id])
            try await ChatClient.withClient(configuration: testConfiguration(server.baseURL, token: bob.token), logger: testLogger("bob")) { client in
                let events = client.events()
                try await client.subscribe(to: room.id)
                let carol = User(id: "u_carol", username: "carol", displayName: "Carol", isBot: true)
                func frame(_ user: User, _ change: String) throws -> [UInt8] {
                    let data: JSONValue = ["user": try Wire.decode(JSONValue.self, from: Wire.encode(user)), "change": .string(change), "by": .string(alice.user.id)]
                    return try Wire.encode(Envelope(type: "member", roomId: room.id, data: data))
                }
                client.handleFrame(try frame(carol, "added"), link: 0)
                #expect(client.members(of: room.id)?.contains(carol.id) == true)
                #expect(client.cachedUser(id: carol.id)?.isBot == true)
                client.handleFrame(try frame(carol, "promoted"), link: 0)   // unknown to this library: tolerated
                client.handleFrame(try frame(bob.user, "removed"), link: 0)
                #expect(client.subscribedRooms.isEmpty)
                let seen = try await collect(events) { $0.contains { if case .subscriptionEnded = $0 { true } else { false } } }
                let changes = seen.compactMap { if case .member(let change) = $0 { change.change.rawValue } else { nil } }
                #expect(changes == ["added", "promoted", "removed"])
            }
        }
    }
}
