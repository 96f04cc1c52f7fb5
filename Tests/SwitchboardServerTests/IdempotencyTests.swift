import Foundation
import SwitchboardProtocol
import SwitchboardServer
import SwitchboardTesting
import Testing

@Suite("Idempotency: a repeated clientId stores and sends nothing", .timeLimit(.minutes(1)))
struct IdempotencyTests {
    /// A room of alice and bob, with bob subscribed to watch what is broadcast.
    static func setUp(_ server: TestServer) async throws -> (alice: AuthResponse, room: Room, watcher: TestSocket) {
        let alice = try await server.register("alice")
        let bob = try await server.register("bob")
        let room = try await server.createRoom("team", token: alice.token, members: [bob.user.id])
        let watcher = try await server.connect(token: bob.token)
        try await watcher.join(room.id)
        return (alice, room, watcher)
    }

    @Test("over WebSocket: the repeat is acked with the first message and duplicate: true, and broadcast once")
    func webSocketRepeat() async throws {
        try await withServer { server in
            let (alice, room, watcher) = try await Self.setUp(server)
            let socket = try await server.connect(token: alice.token)
            try await socket.join(room.id)

            let first = try await socket.request("message", roomId: room.id, data: ["content": "once", "clientId": "c-1"])
            let second = try await socket.request("message", roomId: room.id, data: ["content": "once", "clientId": "c-1"])
            let firstAck = try first.decode(MessageAck.self)
            let secondAck = try second.decode(MessageAck.self)
            #expect(firstAck.duplicate == false)
            #expect(secondAck.duplicate == true)
            #expect(secondAck.message == firstAck.message)

            // Even with other content, the clientId decides.
            let third = try await socket.request("message", roomId: room.id, data: ["content": "changed", "clientId": "c-1"]).decode(MessageAck.self)
            #expect(third.duplicate == true)
            #expect(third.message.id == firstAck.message.id)
            #expect(third.message.content == "once")

            // A new message after the repeats takes the next seq.
            let next = try await socket.sendMessage("next", roomId: room.id, clientId: "c-2")
            #expect(next.seq == firstAck.message.seq + 1)

            #expect(try await watcher.messages(2, in: room.id).map(\.content) == ["once", "next"])
            #expect(try await socket.messages(2, in: room.id).map(\.content) == ["once", "next"])
            #expect(await watcher.nothing(for: .milliseconds(200)) { $0.type == "message" } == nil)
            #expect(socket.pending.filter { $0.type == "message" }.isEmpty)
            #expect(try await server.history(room.id, token: alice.token).messages.map(\.content) == ["once", "next"])
            await socket.close()
            await watcher.close()
        }
    }

    @Test("over HTTP: 201 then 200 duplicate: true, broadcast once")
    func httpRepeat() async throws {
        try await withServer { server in
            let (alice, room, watcher) = try await Self.setUp(server)
            let body: JSONValue = ["content": "once", "clientId": "h-1"]
            let first = try await server.postMessage(room.id, token: alice.token, body)
            let second = try await server.postMessage(room.id, token: alice.token, body)
            #expect(first.status == 201)
            #expect(second.status == 200)
            let firstAck = try first.decode(MessageAck.self, expecting: 201)
            let secondAck = try second.decode(MessageAck.self, expecting: 200)
            #expect(!firstAck.duplicate)
            #expect(secondAck.duplicate)
            #expect(secondAck.message == firstAck.message)
            #expect(try await watcher.messages(1, in: room.id).first?.id == firstAck.message.id)
            try await server.post("marker", roomId: room.id, token: alice.token)
            #expect(try await watcher.messages(1, in: room.id).first?.content == "marker", "the repeat was broadcast")
            #expect(try await server.history(room.id, token: alice.token).messages.count == 2)
            await watcher.close()
        }
    }

    @Test("across transports and connections: WebSocket then HTTP, HTTP then WebSocket, and after a reconnect")
    func crossTransport() async throws {
        try await withServer { server in
            let (alice, room, watcher) = try await Self.setUp(server)
            let socket = try await server.connect(token: alice.token)
            let viaSocket = try await socket.sendMessage("from socket", roomId: room.id, clientId: "x-1")
            let repeatOverHTTP = try await server.postMessage(room.id, token: alice.token, ["content": "from socket", "clientId": "x-1"])
            #expect(repeatOverHTTP.status == 200)
            #expect(try repeatOverHTTP.decode(MessageAck.self, expecting: 200).message.id == viaSocket.id)

            let viaHTTP = try await server.post("from http", roomId: room.id, token: alice.token, clientId: "x-2")
            let repeatOverSocket = try await socket.request("message", roomId: room.id, data: ["content": "from http", "clientId": "x-2"]).decode(MessageAck.self)
            #expect(repeatOverSocket.duplicate)
            #expect(repeatOverSocket.message.id == viaHTTP.id)

            // A client that lost its connection resends with the same clientId.
            await socket.close()
            let again = try await server.connect(token: alice.token)
            let resent = try await again.request("message", roomId: room.id, data: ["content": "from socket", "clientId": "x-1"]).decode(MessageAck.self)
            #expect(resent.duplicate)
            #expect(resent.message.id == viaSocket.id)

            try await again.sendMessage("marker", roomId: room.id)
            #expect(try await watcher.messages(3, in: room.id).map(\.content) == ["from socket", "from http", "marker"])
            #expect(try await server.history(room.id, token: alice.token).messages.map(\.seq) == [1, 2, 3])
            await again.close()
            await watcher.close()
        }
    }

    @Test("a clientId is scoped to its user and room")
    func scope() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("team", token: alice.token, members: [bob.user.id])
            let other = try await server.createRoom("other", token: alice.token)
            let a = try await server.post("alice", roomId: room.id, token: alice.token, clientId: "same")
            let b = try await server.post("bob", roomId: room.id, token: bob.token, clientId: "same")
            let c = try await server.post("elsewhere", roomId: other.id, token: alice.token, clientId: "same")
            #expect(Set([a.id, b.id, c.id]).count == 3)
            #expect(b.seq == 2)
            #expect(c.seq == 1)
            #expect(try await server.history(room.id, token: alice.token).messages.count == 2)
        }
    }
}
