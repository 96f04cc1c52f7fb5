import Foundation
import NIOCore
import NIOWebSocket
import SwitchboardProtocol
import SwitchboardTesting
import Testing

@testable import SwitchboardServer

// Regression tests for issue 8, WebSocket side: each failed on the server before its fix.

/// The metrics token of the servers whose hub census a test reads.
let censusToken = "census-metrics-token"

/// The hub's live objects as `/metrics` shows them (the server must use `censusToken`).
func hubCensus(_ server: TestServer) async throws -> [String: Int] {
    let text = try await server.request(.GET, "/metrics", token: censusToken).text
    var figures: [String: Int] = [:]
    for line in text.split(separator: "\n") where line.hasPrefix("switchboard_hub_") {
        let parts = line.split(separator: " ")
        if parts.count == 2, let value = Double(parts[1]) { figures[String(parts[0])] = Int(value) }
    }
    return figures
}

/// Polls `/metrics` until `done` holds (the server unregisters a closed connection a moment
/// after the client sees the close); returns the last figures.
func waitForCensus(_ server: TestServer, timeout: Duration = .seconds(20), _ done: ([String: Int]) -> Bool) async throws -> [String: Int] {
    let deadline = ContinuousClock.now + timeout
    while true {
        let figures = try await hubCensus(server)
        if done(figures) || ContinuousClock.now > deadline { return figures }
        try await Task.sleep(for: .milliseconds(50))
    }
}

@Suite("Hardening: closed connections leave nothing behind", .timeLimit(.minutes(3)))
struct ConnectionChurnTests {
    @Test("thousands of connections opened and closed (pinging, joining) leave no connection, subscription or room entry behind")
    func churn() async throws {
        try await withServer({
            $0.maxConnectionsPerUser = 1_000
            $0.metricsToken = censusToken
            $0.joinsPerSecond = 100_000
            $0.joinBurst = 100_000
        }) { server in
            let users = try await (0..<4).asyncMap { try await server.register("churn\($0)") }
            let rooms = try await (0..<4).asyncMap { index in
                try await server.createRoom("churn \(index)", token: users[index].token, isPublic: true)
            }
            // Users share rooms, so presence and join/leave events go out on every open and close.
            let total = 2_000
            let batch = 50
            for start in stride(from: 0, to: total, by: batch) {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for index in start..<(start + batch) {
                        group.addTask {
                            let user = users[index % users.count]
                            let socket = try await server.connect(token: user.token)
                            if index % 2 == 0 {
                                try await socket.roundTrip()
                            } else {
                                _ = try await socket.join(rooms[(index / 2) % rooms.count].id)
                            }
                            await socket.close()
                        }
                    }
                    try await group.waitForAll()
                }
            }
            let figures = try await waitForCensus(server) { $0["switchboard_hub_connections"] == 0 && $0["switchboard_hub_subscriptions"] == 0 }
            #expect(figures["switchboard_hub_connections"] == 0, "\(figures)")
            #expect(figures["switchboard_hub_subscriptions"] == 0, "\(figures)")
            #expect(figures["switchboard_hub_users"] == 0, "\(figures)")
            #expect(figures["switchboard_hub_watchers"] == 0, "\(figures)")
            #expect(figures["switchboard_hub_room_entries"] == 0, "\(figures)")
            #expect((figures["switchboard_hub_rooms"] ?? .max) <= rooms.count, "\(figures)")
            // Every upgraded connection's handler (and with it its channel and session) is freed. Other
            // tests running meanwhile hold a few of their own, never thousands.
            let deadline = ContinuousClock.now + .seconds(20)
            while SocketChannelHandler.live.load(ordering: .relaxed) >= 200, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            let live = SocketChannelHandler.live.load(ordering: .relaxed)
            #expect(live < 200, "\(live) WebSocket handlers still alive after \(total) connections closed")
        }
    }
}

extension Sequence where Element: Sendable {
    func asyncMap<Value>(_ transform: (Element) async throws -> Value) async rethrows -> [Value] {
        var values: [Value] = []
        for element in self { values.append(try await transform(element)) }
        return values
    }
}

@Suite("Hardening: stalled clients and large replays", .timeLimit(.minutes(2)))
struct StalledClientTests {
    @Test("a client that stops reading with less than the send cap queued is cut when it misses a ping; its subscription and presence end")
    func stalledReaderIsCut() async throws {
        let contentLength = 1 << 20
        try await withServer({
            // The send cap far above what is queued here: only the heartbeat can end this connection.
            largeBacklog(&$0, contentLength: contentLength)
            // Long enough for the watcher's pongs on a loaded machine; the queue fills well before.
            $0.pingInterval = .seconds(5)
            $0.pingTimeout = .seconds(3)
        }) { server in
            let alice = try await server.register("alice")
            let carol = try await server.register("carol")
            let room = try await server.createRoom("firehose", token: alice.token, members: [carol.user.id])

            let (stalled, response) = try await RawClient.upgrade(port: server.port, token: carol.token, receiveBufferSize: 4096)
            #expect(response.status == 101, "\(response.head)")
            try await stalled.sendText(json(#"{"type": "join", "roomId": "ROOM", "ref": "stalled-join"}"#, roomId: room.id))
            _ = try await stalled.frame(withRef: "stalled-join")
            try await stalled.setReading(false)

            let watcher = try await server.connect(token: alice.token)
            try await watcher.join(room.id)
            // More than the kernel's buffers hold, far less than the send cap.
            let sends = 2 * SlowConsumerTests.kernelSendBufferMax() / contentLength + 4
            let body = String(repeating: "x", count: contentLength)
            for index in 1...sends { _ = try await watcher.sendMessage("\(index) \(body)", roomId: room.id) }

            // Carol never answers pings (a raw client): she is cut, and alice sees her leave and go offline.
            let left = try await watcher.next(timeout: .seconds(20)) { $0.type == "leave" && $0.userId == carol.user.id }
            #expect(left.roomId == room.id)
            let offline = try await watcher.next(timeout: .seconds(10)) { $0.type == "presence" && $0.userId == carol.user.id }
            #expect(offline.data?["status"]?.stringValue == "offline")
            let presence = try await server.request(.GET, "/api/rooms/\(room.id)/presence", token: alice.token).decode(RoomPresence.self)
            #expect(presence.online == [alice.user.id])

            try await stalled.setReading(true)
            _ = try await stalled.waitUntilClosed(timeout: .seconds(30))
            #expect(stalled.isClosed)
            await watcher.close()
        }
    }

    @Test("a join whose replay is far larger than the send cap reaches a client that reads, whole and in order")
    func largeReplay() async throws {
        let count = 300
        try await withServer({
            unlimitedRate(&$0)
            $0.maxOutboundBytes = 1 << 20
        }) { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("big", token: alice.token)
            let writer = try await server.connect(token: alice.token)
            // 4,000 emoji of 4 UTF-8 bytes each: 16 KB a message, 4.8 MB in all, almost 5 times the send cap.
            // (Sent 20 at a time: each ack holds its message, and the writer is a client too.)
            let emoji = String(repeating: "😀", count: 4000)
            for start in stride(from: 1, through: count, by: 20) {
                let requests = (start..<(start + 20)).map { index -> (type: String, roomId: String?, data: JSONValue?) in
                    ("message", room.id, ["content": .string(emoji), "clientId": .string("c\(index)")])
                }
                for answer in try await writer.pipeline(requests) { #expect(answer.type == "ack", "\(answer.raw.prefix(200))") }
            }
            await writer.close()

            let reader = try await server.connect(token: alice.token)
            let ack = try await reader.join(room.id, since: 0)
            #expect(ack.replayed == count)
            #expect(!ack.truncated)
            let replayed = try await reader.messages(count, in: room.id)
            #expect(seqs(replayed) == Array(1...count))
            #expect(replayed.allSatisfy { $0.content == emoji })
            try await reader.roundTrip()
            #expect(!reader.isClosed)
            await reader.close()
        }
    }
}

@Suite("Hardening: answers and queues", .timeLimit(.minutes(1)))
struct AnswerTests {
    @Test("a connection closed for flooding first gets the acks of every message it had accepted")
    func floodCloseKeepsAcks() async throws {
        try await withServer({
            $0.messagesPerSecond = 0.01
            $0.messageBurst = 5
            $0.floodCloseAfter = 50
        }) { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("flood", token: alice.token)
            let socket = try await server.connect(token: alice.token)
            var refs: [String] = []
            for index in 1...60 {
                let ref = "flood-\(index)"
                refs.append(ref)
                try await socket.send("message", roomId: room.id, data: ["content": .string("m \(index)")], ref: ref)
            }
            let code = try await socket.closed(timeout: .seconds(20))
            #expect(code == 1008)
            let acks = socket.pending.filter { $0.type == "ack" }
            let stored = try await server.allMessages(room.id, token: alice.token)
            #expect(stored.count == 5)
            #expect(acks.count == stored.count, "acks \(acks.count) for \(stored.count) stored messages")
            #expect(Set(acks.compactMap(\.ref)) == Set(refs.prefix(5)))
        }
    }

    @Test("when the commit queue is full a message gets rate_limited with retryAfterMs; every acked message is stored, no other")
    func commitQueueBound() async throws {
        try await withServer({
            unlimitedRate(&$0)
            $0.maxPendingMessages = 2
            $0.floodCloseAfter = 100_000
        }) { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("queue", token: alice.token)
            let socket = try await server.connect(token: alice.token)
            let requests = (1...300).map { index -> (type: String, roomId: String?, data: JSONValue?) in
                ("message", room.id, ["content": .string("q \(index)"), "clientId": .string("q\(index)")])
            }
            let answers = try await socket.pipeline(requests)
            let limited = answers.filter { $0.errorCode == "rate_limited" }
            let acked = answers.filter { $0.type == "ack" }
            #expect(!limited.isEmpty, "no message was refused with a queue of 2")
            #expect(limited.allSatisfy { ($0.data?["retryAfterMs"]?.integerValue ?? 0) > 0 }, "\(limited.first?.raw ?? "")")
            #expect(acked.count + limited.count == requests.count)
            let stored = try await server.allMessages(room.id, token: alice.token)
            let ackedIds = try Set(acked.map { try $0.decode(MessageAck.self).message.id })
            #expect(Set(stored.map(\.id)) == ackedIds)
            await socket.close()
        }
    }
}

@Suite("Hardening: caps per user", .timeLimit(.minutes(1)))
struct CapTests {
    @Test("reactions count in the user's rate, and a message carries at most the cap of distinct reactions")
    func reactions() async throws {
        try await withServer({
            $0.messagesPerSecond = 0.01
            $0.messageBurst = 4
            $0.maxReactionsPerMessage = 2
        }) { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("reactions", token: alice.token, members: [bob.user.id])
            let aliceSocket = try await server.connect(token: alice.token)
            let bobSocket = try await server.connect(token: bob.token)
            let message = try await aliceSocket.sendMessage("react to me", roomId: room.id)
            func react(_ socket: TestSocket, _ reaction: String) async throws -> TestFrame {
                try await socket.request(
                    "reaction", roomId: room.id,
                    data: ["messageId": .string(message.id), "reaction": .string(reaction), "action": .string("add")])
            }
            // Bob: two distinct reactions, then a third is over the cap; one already given is fine.
            expectAck(try await react(bobSocket, "👍"))
            expectAck(try await react(bobSocket, "❤️"))
            expectErrorFrame(try await react(bobSocket, "😀"), "forbidden", roomId: room.id)
            // Alice has 3 tokens left after her message: the fourth action is refused.
            expectAck(try await react(aliceSocket, "👍"))
            expectAck(try await react(aliceSocket, "❤️"))
            expectErrorFrame(try await react(aliceSocket, "😀"), "forbidden")
            let limited = try await react(aliceSocket, "👍")
            expectErrorFrame(limited, "rate_limited")
            #expect((limited.data?["retryAfterMs"]?.integerValue ?? 0) > 0)
            await aliceSocket.close()
            await bobSocket.close()
        }
    }

    @Test("a user's WebSocket connections are capped: a new one past the cap closes the oldest with 1008")
    func connectionsPerUser() async throws {
        try await withServer({ $0.maxConnectionsPerUser = 2 }) { server in
            let alice = try await server.register("alice")
            let first = try await server.connect(token: alice.token)
            try await first.roundTrip()
            let second = try await server.connect(token: alice.token)
            try await second.roundTrip()
            let third = try await server.connect(token: alice.token)
            try await third.roundTrip()
            #expect(try await first.closed(timeout: .seconds(5)) == 1008)
            try await second.roundTrip()
            try await third.roundTrip()
            await second.close()
            await third.close()
        }
    }

    @Test("room creation and joins are rate-limited per user")
    func roomsAndJoins() async throws {
        try await withServer({
            $0.roomsPerHour = 2
            $0.joinsPerSecond = 0.01
            $0.joinBurst = 2
        }) { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("one", token: alice.token)
            _ = try await server.createRoom("two", token: alice.token)
            let third = try await server.request(.POST, "/api/rooms", token: alice.token, json: CreateRoomRequest(name: "three"))
            expectHTTPError(third, 429, .rateLimited)

            let socket = try await server.connect(token: alice.token)
            _ = try await socket.join(room.id)
            _ = try await socket.join(room.id)
            let answer = try await socket.request("join", roomId: room.id)
            expectErrorFrame(answer, "rate_limited", roomId: room.id)
            await socket.close()
        }
    }

    @Test("the hub's room cache is bounded: rooms nobody connected follows are dropped, and read again when needed")
    func roomCacheEviction() async throws {
        try await withServer({
            $0.roomCacheSize = 5
            $0.roomsPerHour = 1_000
            // 31 messages in a moment: past the default burst (30), the last would wait on the rate limit.
            $0.messageBurst = 1_000
            $0.metricsToken = censusToken
        }) { server in
            let alice = try await server.register("alice")
            var rooms: [Room] = []
            for index in 1...30 { rooms.append(try await server.createRoom("room \(index)", token: alice.token)) }
            for room in rooms { _ = try await server.post("hello", roomId: room.id, token: alice.token) }
            let figures = try await hubCensus(server)
            #expect((figures["switchboard_hub_rooms"] ?? .max) <= 10, "\(figures)")
            // An evicted room still works, with its members and seq intact.
            let socket = try await server.connect(token: alice.token)
            let ack = try await socket.join(rooms[0].id)
            #expect(ack.lastSeq == 1)
            #expect(ack.room.members == [alice.user.id])
            #expect(try await socket.sendMessage("again", roomId: rooms[0].id).seq == 2)
            await socket.close()
        }
    }
}

@Suite("Hardening: input", .timeLimit(.minutes(1)))
struct InputTests {
    @Test("a text frame that is not UTF-8 closes the connection with 1007 and stores nothing")
    func invalidUTF8() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("bytes", token: alice.token)
            let (client, response) = try await RawClient.upgrade(port: server.port, token: alice.token)
            #expect(response.status == 101)
            var payload = Array(json(#"{"type":"message","roomId":"ROOM","ref":"r","data":{"content":"bad "#, roomId: room.id).utf8)
            payload += [0xC3, 0x28] + Array(#""}}"#.utf8)
            try await client.write(RawClient.clientFrame(opcode: 0x1, payload: payload))
            let frames = try await client.waitUntilClosed(timeout: .seconds(10), keepPayloads: true)
            let close = frames.first { $0.opcode == 0x8 }
            #expect(close?.closeCode == 1007, "frames: \(frames.map { "\($0.opcode) \($0.text)" })")
            #expect(try await server.allMessages(room.id, token: alice.token).isEmpty)
        }
    }

    @Test("a character split between two fragments of a text message is accepted")
    func fragmentedUTF8() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("bytes", token: alice.token)
            let (client, _) = try await RawClient.upgrade(port: server.port, token: alice.token)
            let text = Array(json(#"{"type":"message","roomId":"ROOM","ref":"split","data":{"content":"é😀"}}"#, roomId: room.id).utf8)
            let cut = text.firstIndex(of: 0xF0)! + 2
            var first = RawClient.clientFrame(opcode: 0x1, payload: Array(text[..<cut]))
            first[0] &= 0x7F  // not final
            try await client.write(first + RawClient.clientFrame(opcode: 0x0, payload: Array(text[cut...])))
            let ack = try await client.frame(withRef: "split")
            #expect(ack.text.contains(#""type":"ack""#), "\(ack.text)")
            #expect(try await server.allMessages(room.id, token: alice.token).map(\.content) == ["é😀"])
        }
    }

    @Test("control characters are invalid where the contract says, over WebSocket and HTTP; tab and new line pass")
    func controlCharacters() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("controls", token: alice.token)
            let socket = try await server.connect(token: alice.token)
            for content in ["\u{1B}[31mred", "bell\u{07}", "line\r\nbreak", "del\u{7F}", "c1\u{9B}"] {
                let answer = try await socket.request("message", roomId: room.id, data: ["content": .string(content)])
                expectErrorFrame(answer, "invalid", roomId: room.id)
                expectHTTPError(try await server.postMessage(room.id, token: alice.token, ["content": .string(content)]), 400, .invalid)
            }
            let fine = try await socket.sendMessage("tab\there\nnew line", roomId: room.id)
            #expect(fine.content == "tab\there\nnew line")

            for name in ["evil\u{202E}name", "bell\u{07}", "tab\tname"] {
                let register = try await server.request(
                    .POST, "/api/register", json: RegisterRequest(username: "u\(name.unicodeScalars.count)", password: "password123", displayName: name))
                expectHTTPError(register, 400, .invalid)
                expectHTTPError(try await server.request(.POST, "/api/rooms", token: alice.token, json: CreateRoomRequest(name: name)), 400, .invalid)
            }
            await socket.close()
        }
    }

    @Test("a message with an escaped lone surrogate is answered invalid with its ref and roomId")
    func loneSurrogate() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("surrogates", token: alice.token)
            let socket = try await server.connect(token: alice.token)
            let text = json(#"{"type":"message","roomId":"ROOM","ref":"lone","data":{"content":"bad \ud800 half"}}"#, roomId: room.id)
            expectErrorFrame(try await socket.answer(toRaw: text, ref: "lone"), "invalid", ref: "lone", roomId: room.id)
            // A proper pair is a character.
            let pair = json(#"{"type":"message","roomId":"ROOM","ref":"pair","data":{"content":"ok \ud83d\ude00"}}"#, roomId: room.id)
            expectAck(try await socket.answer(toRaw: pair, ref: "pair"))
            await socket.close()
        }
    }

    @Test("a join re-checks membership under the hub's lock: a removal that came first refuses it")
    func joinAfterRemoval() {
        let hub = Hub(configuration: ServerConfiguration(), metrics: ServerMetrics())
        let alice = User(id: "u_a", username: "alice", displayName: "Alice", isBot: false)
        let bob = User(id: "u_b", username: "bob", displayName: "Bob", isBot: false)
        let room = Room(id: "r_1", name: "room", kind: .group, isPublic: false, createdAt: 0, lastSeq: 0, members: [alice.id, bob.id])
        hub.roomCreated(room, now: 0)
        let connection = hub.register(user: bob, tokenId: nil, tokenExpiresAt: nil, sink: DiscardingSink(), rooms: [room], now: 0)
        var after = room
        after.members = [alice.id]
        hub.memberRemoved(bob, from: after, by: alice.id, now: 0)
        #expect(hub.beginJoin(connection, roomId: room.id, now: 0) == .notMember)
        #expect(!hub.isSubscribed(connection, to: room.id))
    }
}

final class DiscardingSink: EventSink {
    func send(_ frame: OutgoingFrame) {}
    func close(_ end: SessionEnd) {}
}

@Suite("Protocol 1.1 over WebSocket", .timeLimit(.minutes(1)))
struct MembershipEventTests {
    @Test("the join ack lists the members online; GET presence lists online and typing, for members only")
    func onlineAndPresence() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let carol = try await server.register("carol")
            let room = try await server.createRoom("presence", token: alice.token, members: [bob.user.id])
            let bobSocket = try await server.connect(token: bob.token)
            let aliceSocket = try await server.connect(token: alice.token)
            let ack = try await aliceSocket.join(room.id)
            #expect(ack.online == [alice.user.id, bob.user.id].sorted())

            _ = try await bobSocket.request("typing", roomId: room.id, data: ["isTyping": .bool(true)])
            let presence = try await server.request(.GET, "/api/rooms/\(room.id)/presence", token: alice.token).decode(RoomPresence.self)
            #expect(presence.online == [alice.user.id, bob.user.id].sorted())
            #expect(presence.typing == [bob.user.id])
            expectHTTPError(try await server.request(.GET, "/api/rooms/\(room.id)/presence", token: carol.token), 403, .forbidden)
            expectHTTPError(try await server.request(.GET, "/api/rooms/r_nope/presence", token: carol.token), 404, .notFound)
            await bobSocket.close()
            await aliceSocket.close()
        }
    }

    @Test("member events reach every subscriber, the concerned user's included; a removed user gets nothing more from the room")
    func memberEvents() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("members", token: alice.token)
            let aliceSocket = try await server.connect(token: alice.token)
            _ = try await aliceSocket.join(room.id)
            let bobSocket = try await server.connect(token: bob.token)

            #expect(try await server.addMember(bob.user.id, to: room.id, token: alice.token).status == 200)
            let added = try await aliceSocket.next(timeout: .seconds(5)) { $0.type == "member" }
            let addedData = try added.decode(MemberChangeData.self)
            #expect(added.roomId == room.id)
            #expect(addedData == MemberChangeData(user: bob.user, change: .added, by: alice.user.id))

            _ = try await bobSocket.join(room.id)
            #expect(try await server.removeMember(bob.user.id, from: room.id, token: alice.token).status == 200)
            for socket in [aliceSocket, bobSocket] {
                let removed = try await socket.next(timeout: .seconds(5)) { $0.type == "member" }
                #expect(try removed.decode(MemberChangeData.self) == MemberChangeData(user: bob.user, change: .removed, by: alice.user.id))
            }
            _ = try await aliceSocket.sendMessage("after the removal", roomId: room.id)
            #expect(await bobSocket.nothing(for: .milliseconds(500)) { $0.roomId == room.id && $0.type != "room" } == nil)
            await aliceSocket.close()
            await bobSocket.close()
        }
    }
}
