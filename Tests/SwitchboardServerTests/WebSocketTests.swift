import Foundation
import SwitchboardProtocol
import SwitchboardServer
import SwitchboardTesting
import Testing

@Suite("WebSocket: authentication and every client request", .timeLimit(.minutes(1)))
struct WebSocketTests {
    // MARK: Authentication

    @Test("an upgrade without a token, or with an unknown one, is HTTP 401 and no upgrade")
    func upgradeRefused() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            for (path, token) in [("/ws", nil), ("/ws", "bogus-token"), ("/ws?token=bogus-token", nil), ("/ws?token=", nil)] as [(String, String?)] {
                let (client, response) = try await RawClient.upgrade(port: server.port, path: path, token: token)
                #expect(response.status == 401, "\(path) token \(token ?? "none"): \(response.head)")
                #expect((try? Wire.decode(ErrorResponse.self, from: response.body))?.error.code == .unauthorized, "\(response.text)")
                await client.close()
            }
            let (client, response) = try await RawClient.upgrade(port: server.port, token: alice.token)
            #expect(response.status == 101, "\(response.head)")
            await client.close()

            await #expect(throws: (any Error).self) { _ = try await server.connect(token: "bogus-token") }
            await #expect(throws: (any Error).self) { _ = try await TestSocket.connect(url: server.webSocketURL, token: nil) }
        }
    }

    @Test("a revoked token is refused at the upgrade")
    func revokedTokenRefused() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let created = try await server.createToken(token: alice.token)
            let deleted = try await server.request(.DELETE, "/api/tokens/\(created.id)", token: alice.token)
            #expect(deleted.status == 204)
            let (client, response) = try await RawClient.upgrade(port: server.port, token: created.token)
            #expect(response.status == 401, "\(response.head)")
            await client.close()
        }
    }

    @Test("?token= authenticates a browser's WebSocket")
    func queryToken() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            let socket = try await server.connect(token: alice.token, useQuery: true)
            let message = try await socket.sendMessage("via query", roomId: room.id)
            #expect(message.userId == alice.user.id)
            await socket.close()
        }
    }

    // MARK: Requests

    @Test("join: ack {room, lastSeq, replayed, truncated} with roomId and ref; without since nothing is replayed")
    func join() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            for index in 1...3 { try await server.post("old \(index)", roomId: room.id, token: alice.token) }
            let socket = try await server.connect(token: alice.token)
            try await socket.send("join", roomId: room.id, ref: "join-1")
            let ack = try await socket.next { $0.ref == "join-1" }
            expectAck(ack, roomId: room.id)
            let data = try ack.decode(JoinAck.self)
            #expect(data.room.id == room.id)
            #expect(data.room.name == "team")
            #expect(data.lastSeq == 3)
            #expect(data.replayed == 0)
            #expect(data.truncated == false)
            #expect(ack.json["timestamp"]?.integerValue != nil)
            #expect(socket.pending.filter { $0.type == "message" }.isEmpty, "nothing is replayed without since")

            // Live messages come after the ack.
            try await server.post("new", roomId: room.id, token: alice.token)
            let live = try await socket.next("message").decode(Message.self)
            #expect(live.seq == 4)
            #expect(live.content == "new")
            await socket.close()
        }
    }

    @Test("join with data {} and with since null behaves as without since")
    func joinEmptyData() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            try await server.post("old", roomId: room.id, token: alice.token)
            let socket = try await server.connect(token: alice.token)
            for data in [[:], ["since": nil]] as [JSONValue] {
                let ack = try await socket.request("join", roomId: room.id, data: data)
                expectAck(ack, roomId: room.id)
                #expect(try ack.decode(JoinAck.self).replayed == 0)
                #expect(try ack.decode(JoinAck.self).lastSeq == 1)
            }
            #expect(socket.pending.filter { $0.type == "message" }.isEmpty)
            await socket.close()
        }
    }

    @Test("message: ack {message, duplicate: false} with roomId; every subscriber gets it, the sender too, stamped by the server")
    func message() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("team", token: alice.token, members: [bob.user.id])
            let aliceSocket = try await server.connect(token: alice.token)
            let bobSocket = try await server.connect(token: bob.token)
            try await aliceSocket.join(room.id)
            try await bobSocket.join(room.id)

            let before = Int(Date().timeIntervalSince1970 * 1000)
            // The client's timestamp and userId are ignored, whatever their type.
            let raw = json(#"{"type": "message", "roomId": "ROOM", "data": {"content": "hello", "clientId": "x1"}, "ref": "m1", "timestamp": "yesterday", "userId": "\#(bob.user.id)"}"#, roomId: room.id)
            let ack = try await aliceSocket.answer(toRaw: raw, ref: "m1")
            expectAck(ack, roomId: room.id)
            let data = try ack.decode(MessageAck.self)
            #expect(data.duplicate == false)
            #expect(data.message.content == "hello")
            #expect(data.message.userId == alice.user.id)
            #expect(data.message.roomId == room.id)
            #expect(data.message.seq == 1)
            #expect(data.message.clientId == "x1")
            #expect(data.message.createdAt >= before - 5_000)

            for socket in [aliceSocket, bobSocket] {
                let frame = try await socket.next("message")
                #expect(frame.roomId == room.id)
                #expect(frame.userId == alice.user.id, "the server stamps the author")
                let timestamp = try #require(frame.json["timestamp"]?.integerValue)
                #expect(Int(timestamp) >= before - 5_000)
                #expect(try frame.decode(Message.self) == data.message)
            }
            // Exactly one copy each.
            #expect(await bobSocket.nothing(for: .milliseconds(200)) { $0.type == "message" } == nil)
            #expect(aliceSocket.pending.filter { $0.type == "message" }.isEmpty)
            await aliceSocket.close()
            await bobSocket.close()
        }
    }

    @Test("message: content and meta that need escaping come back intact, in the ack and in the event")
    func messageEscaping() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            let socket = try await server.connect(token: alice.token)
            try await socket.join(room.id)
            // Control characters other than tab and new line are refused in content (see InputTests); meta is relayed untouched.
            let content = "quote \" backslash \\ slash / newline \n tab \t line \u{2028} é 漢字 😀"
            let meta: JSONValue = ["note": "a \"b\" \\ c\n bell \u{07} unit \u{1F}", "n": 3, "nested": ["ok": true, "list": [1, "two", nil]]]
            let ack = try await socket.request(
                "message", roomId: room.id, data: ["content": .string(content), "clientId": "c\"1\\", "meta": meta])
            let stored = try ack.decode(MessageAck.self).message
            #expect(stored.content == content)
            #expect(stored.clientId == "c\"1\\")
            #expect(stored.meta == meta)
            let event = try await socket.next("message")
            #expect(try event.decode(Message.self) == stored)
            await socket.close()
        }
    }

    @Test("with every frame logged (DEBUG=websocket:*), a message is still published and acked, once")
    func messageAckWithFramesLogged() async throws {
        try await withServer({ $0.logFrames = true }) { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            let socket = try await server.connect(token: alice.token)
            try await socket.join(room.id)
            let ref = socket.makeRef()
            try await socket.send("message", roomId: room.id, data: ["content": "logged"], ref: ref)
            let event = try await socket.next("message")
            let ack = try await socket.next { $0.ref == ref }
            expectAck(ack, roomId: room.id)
            #expect(try ack.decode(MessageAck.self).message == event.decode(Message.self))
            #expect(await socket.nothing(for: .milliseconds(200)) { $0.ref == ref } == nil)
            await socket.close()
        }
    }

    @Test("message frames are read alike whatever their JSON looks like: spacing, key order, escapes, numbers, nesting")
    func messageFrameShapes() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            let socket = try await server.connect(token: alice.token)
            let cases: [(frame: String, content: String, meta: String?)] = [
                (#"{"type":"message","roomId":"ROOM","data":{"content":"plain"},"ref":"f1"}"#, "plain", nil),
                (
                    #" { "ref" : "f2", "data" : { "meta" : {"n": -12, "z": 0, "l": [true, false, null, {"k": []}], "s": "x\/y"}, "content" : "tab\tq\"/\\ \u00e9" }, "timestamp": 5, "roomId":"ROOM", "type": "message" } "#,
                    "tab\tq\"/\\ é", #"{"n": -12, "z": 0, "l": [true, false, null, {"k": []}], "s": "x\/y"}"#
                ),
                (#"{"type":"message","roomId":"ROOM","ref":"f3","data":{"content":"pi","meta":{"pi":3.25,"big":-9223372036854775808,"e":1e3}}}"#, "pi", #"{"pi":3.25,"big":-9223372036854775808,"e":1e3}"#),
                (#"{"type":"message","roomId":"ROOM","ref":"f4","data":{"content":"\ud83d\ude00 smile","meta":null}}"#, "😀 smile", nil),
            ]
            for (index, testCase) in cases.enumerated() {
                let ack = try await socket.answer(toRaw: json(testCase.frame, roomId: room.id), ref: "f\(index + 1)")
                expectAck(ack, roomId: room.id)
                let message = try ack.decode(MessageAck.self).message
                #expect(message.content == testCase.content, "\(testCase.frame)")
                #expect(message.meta == testCase.meta.map { try! Wire.decode(JSONValue.self, from: $0) }, "\(testCase.frame)")
            }
            // Not a JSON object once the last brace is read, or a ref that is not a string: the contract's errors.
            for bad in [#"{"type":"message","roomId":"ROOM","ref":"g1","data":{"content":"x"}} x"#, #"{"type":"message","roomId":"ROOM","ref":7,"data":{"content":"x"}}"#] {
                try await socket.send(raw: json(bad, roomId: room.id))
                let error = try await socket.next("error")
                #expect(try error.decode(ProtocolError.self).code == .invalid, "\(bad)")
            }
            await socket.close()
        }
    }

    @Test("typing: ack {} with roomId; other subscribers get it, not the typist")
    func typing() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("team", token: alice.token, members: [bob.user.id])
            let aliceSocket = try await server.connect(token: alice.token)
            let bobSocket = try await server.connect(token: bob.token)
            try await aliceSocket.join(room.id)
            try await bobSocket.join(room.id)

            let ack = try await aliceSocket.request("typing", roomId: room.id, data: ["isTyping": true])
            expectAck(ack, roomId: room.id)
            #expect(ack.data == [:])
            let typing = try await bobSocket.next("typing")
            #expect(typing.roomId == room.id)
            #expect(typing.userId == alice.user.id)
            #expect(typing.data?["isTyping"] == true)
            #expect(await aliceSocket.nothing(for: .milliseconds(200)) { $0.type == "typing" } == nil)
            await aliceSocket.close()
            await bobSocket.close()
        }
    }

    @Test("reaction: ack {messageId, reactions} with roomId")
    func reaction() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            let socket = try await server.connect(token: alice.token)
            let message = try await socket.sendMessage("react to me", roomId: room.id)
            let ack = try await socket.request("reaction", roomId: room.id, data: ["messageId": .string(message.id), "reaction": "👍", "action": "add"])
            expectAck(ack, roomId: room.id)
            let data = try ack.decode(ReactionAck.self)
            #expect(data.messageId == message.id)
            #expect(data.reactions == ["👍": 1])
            #expect(try await server.history(room.id, token: alice.token).messages.first?.reactions == ["👍": 1])
            await socket.close()
        }
    }

    @Test("ping: pong with the same data and ref, whatever the data; no ack besides")
    func ping() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let socket = try await server.connect(token: alice.token)
            let payloads: [JSONValue?] = [["n": 1, "s": "x"], "text", 42, [1, 2, 3], true, nil]
            for (index, payload) in payloads.enumerated() {
                let ref = "p\(index)"
                try await socket.send("ping", data: payload, ref: ref)
                let pong = try await socket.next { $0.ref == ref }
                #expect(pong.type == "pong", "\(pong.raw)")
                #expect(pong.data == payload || (payload == nil && pong.data == .null), "\(pong.raw)")
                #expect(pong.roomId == nil)
            }
            #expect(await socket.nothing(for: .milliseconds(200)) { $0.type == "ack" || $0.type == "error" } == nil, "exactly one answer per ref")
            await socket.close()
        }
    }

    @Test("leave: ack {} with roomId; live messages stop, and room events take their place")
    func leave() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("team", token: alice.token, members: [bob.user.id])
            let bobSocket = try await server.connect(token: bob.token)
            try await bobSocket.join(room.id)
            try await server.post("while joined", roomId: room.id, token: alice.token)
            #expect(try await bobSocket.next("message").decode(Message.self).content == "while joined")

            let ack = try await bobSocket.request("leave", roomId: room.id)
            expectAck(ack, roomId: room.id)
            #expect(ack.data == [:])
            try await server.post("after leaving", roomId: room.id, token: alice.token)
            let event = try await bobSocket.next("room")
            #expect(event.roomId == room.id)
            #expect(event.data?["lastMessage"]?["content"] == "after leaving")
            #expect(bobSocket.pending.filter { $0.type == "message" }.isEmpty)
            #expect(await bobSocket.nothing(for: .milliseconds(200)) { $0.type == "message" } == nil)
            await bobSocket.close()
        }
    }

    @Test("leaving a room the connection has not joined is acked")
    func leaveNotJoined() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            let socket = try await server.connect(token: alice.token)
            expectAck(try await socket.request("leave", roomId: room.id), roomId: room.id)
            try await socket.join(room.id)
            expectAck(try await socket.request("leave", roomId: room.id), roomId: room.id)
            expectAck(try await socket.request("leave", roomId: room.id), roomId: room.id)
            let unknown = try await socket.request("leave", roomId: "r_missing")
            #expect(unknown.errorCode == "not_found")
            await socket.close()
        }
    }

    @Test("a non-member of a private room is forbidden to join, send, type and react; an unknown room is not_found")
    func forbiddenAndNotFound() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let secret = try await server.createRoom("secret", token: alice.token)
            let message = try await server.post("private", roomId: secret.id, token: alice.token)
            let socket = try await server.connect(token: bob.token)

            let requests: [(String, JSONValue?)] = [
                ("join", nil), ("message", ["content": "let me in"]), ("typing", ["isTyping": true]),
                ("reaction", ["messageId": .string(message.id), "reaction": "👀", "action": "add"]),
            ]
            for (type, data) in requests {
                expectErrorFrame(try await socket.request(type, roomId: secret.id, data: data), "forbidden", roomId: secret.id)
                expectErrorFrame(try await socket.request(type, roomId: "no-such-room", data: data), "not_found", roomId: "no-such-room")
            }
            #expect(try await server.history(secret.id, token: alice.token).messages.count == 1)
            #expect(try await server.room(secret.id, token: alice.token).decode(RoomResponse.self).room.members == [alice.user.id])
            await socket.close()
        }
    }

    @Test("joining a public room makes the caller a member")
    func joinPublicRoom() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let lobby = try await server.createRoom("lobby", token: alice.token, isPublic: true)
            let socket = try await server.connect(token: bob.token)
            let ack = try await socket.join(lobby.id)
            #expect(ack.room.members.contains(bob.user.id))
            let room = try await server.room(lobby.id, token: alice.token).decode(RoomResponse.self).room
            #expect(Set(room.members) == [alice.user.id, bob.user.id])
            #expect(try await server.summary(lobby.id, token: bob.token) != nil)
            let sent = try await socket.sendMessage("now a member", roomId: lobby.id)
            #expect(sent.userId == bob.user.id)
            await socket.close()
        }
    }

    @Test("a member may send without joining; subscribers get it")
    func sendWithoutJoining() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("team", token: alice.token, members: [bob.user.id])
            let aliceSocket = try await server.connect(token: alice.token)
            try await aliceSocket.join(room.id)
            let bobSocket = try await server.connect(token: bob.token)
            let sent = try await bobSocket.sendMessage("no join needed", roomId: room.id)
            #expect(sent.seq == 1)
            let received = try await aliceSocket.next("message").decode(Message.self)
            #expect(received.id == sent.id)
            #expect(received.userId == bob.user.id)
            await aliceSocket.close()
            await bobSocket.close()
        }
    }

    @Test("a member removed from a room stops getting its messages and may not join it again")
    func removedMember() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("team", token: alice.token, members: [bob.user.id])
            let bobSocket = try await server.connect(token: bob.token)
            try await bobSocket.join(room.id)
            _ = try await server.removeMember(bob.user.id, from: room.id, token: alice.token).decode(RoomResponse.self)
            try await server.post("not for bob", roomId: room.id, token: alice.token)
            try await server.post("nor this", roomId: room.id, token: alice.token)
            expectErrorFrame(try await bobSocket.request("join", roomId: room.id), "forbidden", roomId: room.id)
            expectErrorFrame(try await bobSocket.request("message", roomId: room.id, data: ["content": "hi"]), "forbidden", roomId: room.id)
            #expect(await bobSocket.nothing(for: .milliseconds(200)) { $0.type == "message" } == nil)
            let leaked = bobSocket.pending.filter { frame in
                frame.type == "message" || (frame.type == "room" && frame.data?["lastMessage"]?["content"] == "nor this")
            }
            #expect(leaked.isEmpty, "\(leaked.map(\.raw))")
            await bobSocket.close()
        }
    }

    @Test("every request with a ref gets exactly one answer with that ref")
    func oneAnswerPerRef() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            let socket = try await server.connect(token: alice.token)
            let frames: [String] = [
                json(#"{"type": "join", "roomId": "ROOM", "ref": "a"}"#, roomId: room.id),
                json(#"{"type": "message", "roomId": "ROOM", "data": {"content": "x"}, "ref": "b"}"#, roomId: room.id),
                json(#"{"type": "typing", "roomId": "ROOM", "data": {"isTyping": true}, "ref": "c"}"#, roomId: room.id),
                json(#"{"type": "message", "roomId": "ROOM", "data": {"content": ""}, "ref": "d"}"#, roomId: room.id),
                json(#"{"type": "nonsense", "roomId": "ROOM", "ref": "e"}"#, roomId: room.id),
                json(#"{"type": "leave", "roomId": "ROOM", "ref": "f"}"#, roomId: room.id),
                #"{"type": "ping", "ref": "g"}"#,
            ]
            for frame in frames { try await socket.send(raw: frame) }
            let expected = ["a": "ack", "b": "ack", "c": "ack", "d": "error", "e": "error", "f": "ack", "g": "pong"]
            for (ref, type) in expected.sorted(by: { $0.key < $1.key }) {
                let answer = try await socket.next { $0.ref == ref }
                #expect(answer.type == type, "ref \(ref): \(answer.raw)")
            }
            #expect(await socket.nothing(for: .milliseconds(300)) { $0.ref != nil } == nil)
            await socket.close()
        }
    }

    @Test("messages sent back to back are stored in the order sent, whether checking them needs the store (a reply) or not")
    func backToBackMessagesKeepTheirOrder() async throws {
        try await withServer(unlimitedRate) { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            let socket = try await server.connect(token: alice.token)
            let first = try await socket.answer(
                toRaw: json(#"{"type": "message", "roomId": "ROOM", "data": {"content": "first"}, "ref": "0"}"#, roomId: room.id), ref: "0"
            ).decode(MessageAck.self).message
            // Every third one replies to the first: its check reads the store, in a task, while
            // the others are checked at once; none may overtake another.
            for index in 1...30 {
                let reply = index % 3 == 0 ? #", "replyTo": "\#(first.id)""# : ""
                try await socket.send(raw: json(#"{"type": "message", "roomId": "ROOM", "data": {"content": "m\#(index)"\#(reply)}, "ref": "\#(index)"}"#, roomId: room.id))
            }
            for index in 1...30 {
                let ack = try await socket.next { $0.ref == "\(index)" }
                try #require(ack.type == "ack", "ref \(index): \(ack.raw)")
                let message = try ack.decode(MessageAck.self).message
                #expect(message.seq == first.seq + index, "ref \(index): \(ack.raw)")
                #expect(message.content == "m\(index)")
                #expect(message.replyTo == (index % 3 == 0 ? first.id : nil))
            }
            await socket.close()
        }
    }
}
