import Foundation
import SwitchboardProtocol
import SwitchboardServer
import SwitchboardTesting
import Testing

@Suite("Lifecycle: restart, graceful shutdown, heartbeat", .timeLimit(.minutes(1)))
struct LifecycleTests {
    /// What the first run leaves behind for the second.
    struct Before: Sendable {
        var alice: AuthResponse
        var bob: AuthResponse
        var apiToken: CreateTokenResponse
        var room: Room
        var direct: Room
        var messages: [Message]
    }

    @Test("a restart on the same database keeps users, tokens, rooms, history, and seq goes on")
    func restart() async throws {
        let path = try TestServer.temporaryDatabasePath()
        let before = try await withServer(databasePath: path) { server in
            let alice = try await server.register("alice", displayName: "Alice A.")
            let bob = try await server.register("bob")
            let apiToken = try await server.createToken(token: alice.token, name: "bot")
            let room = try await server.createRoom("team", token: alice.token, members: [bob.user.id])
            let direct = try await server.directRoom(with: bob.user.id, token: alice.token).decode(RoomResponse.self).room
            var messages: [Message] = []
            for index in 1...3 { messages.append(try await server.post("before \(index)", roomId: room.id, token: alice.token, clientId: "c\(index)")) }
            try await server.post("dm", roomId: direct.id, token: bob.token)
            return Before(alice: alice, bob: bob, apiToken: apiToken, room: room, direct: direct, messages: messages)
        }

        try await withServer(databasePath: path) { server in
            // Tokens of both kinds still work; passwords too; names stay taken.
            #expect(try await server.me(token: before.alice.token).decode(UserResponse.self).user == before.alice.user)
            #expect(try await server.me(token: before.apiToken.token).decode(UserResponse.self).user == before.alice.user)
            let login = try await server.request(.POST, "/api/login", json: LoginRequest(username: "bob", password: "password123"))
            #expect(try login.decode(AuthResponse.self).user == before.bob.user)
            expectHTTPError(try await server.request(.POST, "/api/register", json: RegisterRequest(username: "ALICE", password: "password123")), 409, .conflict)

            // Rooms and history.
            let rooms = try await server.rooms(token: before.alice.token)
            #expect(Set(rooms.map(\.room.id)) == [before.room.id, before.direct.id])
            let history = try await server.history(before.room.id, token: before.alice.token)
            #expect(history.messages == before.messages)
            let direct = try await server.directRoom(with: before.bob.user.id, token: before.alice.token).decode(RoomResponse.self).room
            #expect(direct.id == before.direct.id)
            #expect(direct.lastSeq == 1)

            // seq goes on, and clientIds are still remembered.
            let next = try await server.post("after", roomId: before.room.id, token: before.alice.token)
            #expect(next.seq == 4)
            let repeated = try await server.postMessage(before.room.id, token: before.alice.token, ["content": "before 1", "clientId": "c1"])
            #expect(repeated.status == 200)
            #expect(try repeated.decode(MessageAck.self, expecting: 200).message.id == before.messages[0].id)

            // Recovery over WebSocket across the restart.
            let socket = try await server.connect(token: before.bob.token)
            let (replay, ackFrame) = try await RecoveryTests.joinCollectingReplay(socket, roomId: before.room.id, since: 1)
            #expect(seqs(replay) == [2, 3, 4])
            #expect(try ackFrame.decode(JoinAck.self).lastSeq == 4)
            await socket.close()

            // The revocation of an old token works after the restart too.
            let deleted = try await server.request(.DELETE, "/api/tokens/\(before.apiToken.id)", token: before.alice.token)
            #expect(deleted.status == 204)
            expectHTTPError(try await server.me(token: before.apiToken.token), 401, .unauthorized)
        }
    }

    @Test("graceful shutdown closes every WebSocket with 1001")
    func gracefulShutdown() async throws {
        let sockets = try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("team", token: alice.token, members: [bob.user.id])
            let joined = try await server.connect(token: alice.token)
            try await joined.join(room.id)
            let idle = try await server.connect(token: bob.token, useQuery: true)
            try await idle.roundTrip()
            return [joined, idle]
        }
        for socket in sockets {
            #expect(try await socket.closed(timeout: .seconds(10)) == 1001)
        }
    }

    /// Pings every 200 ms; 2 s to answer, so that a session still opening on a busy machine (the
    /// whole suite at once on 2 cores) is not cut before it could answer anything.
    static func fastHeartbeat(_ configuration: inout ServerConfiguration) {
        configuration.pingInterval = .milliseconds(200)
        configuration.pingTimeout = .seconds(2)
    }

    @Test("heartbeat: a client that never answers pings is disconnected; one that answers stays")
    func heartbeat() async throws {
        try await withServer(Self.fastHeartbeat) { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let healthy = try await server.connect(token: bob.token)

            let started = ContinuousClock.now
            let (silent, response) = try await RawClient.upgrade(port: server.port, token: alice.token)
            #expect(response.status == 101, "\(response.head)")
            let frames = try await silent.waitUntilClosed(timeout: .seconds(10))
            let elapsed = ContinuousClock.now - started
            #expect(frames.contains { $0.opcode == 0x9 }, "the server never pinged: \(frames.map(\.opcode))")
            #expect(elapsed >= .milliseconds(2_100), "disconnected after \(elapsed), before a ping could time out")
            #expect(silent.isClosed)

            // The healthy client has been through fifteen intervals by now and is still open.
            let end = started + .milliseconds(3_000)
            if ContinuousClock.now < end {
                #expect(await healthy.nothing(for: end - ContinuousClock.now) { _ in true } == nil)
            }
            #expect(!healthy.isClosed)
            try await healthy.roundTrip()
            await healthy.close()
        }
    }

    @Test("a client that sends ping envelopes but never answers WebSocket pings is disconnected too")
    func envelopePingDoesNotCount() async throws {
        try await withServer(Self.fastHeartbeat) { server in
            let alice = try await server.register("alice")
            let (client, response) = try await RawClient.upgrade(port: server.port, token: alice.token)
            #expect(response.status == 101)
            // It talks (ping envelopes), but never answers a WebSocket ping frame.
            try await client.sendText(#"{"type": "ping", "ref": "1"}"#)
            let early = try await client.framesThrough(ref: "1")
            #expect(early.last?.text.contains(#""type":"pong""#) == true)
            let frames = try await early + client.waitUntilClosed(timeout: .seconds(10))
            #expect(frames.contains { $0.opcode == 0x9 })
            #expect(client.isClosed)
        }
    }
}
