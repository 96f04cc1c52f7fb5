import Foundation
import SwitchboardProtocol
import SwitchboardServer
import SwitchboardTesting
import Testing

@Suite("Presence, join and leave notices, typing, reactions and room events", .timeLimit(.minutes(1)))
struct PresenceTypingTests {
    static func isPresence(of userId: String, _ status: String) -> @Sendable (TestFrame) -> Bool {
        { $0.type == "presence" && $0.userId == userId && $0.data?["status"]?.stringValue == status }
    }

    @Test("presence: online on the first connection, offline after the last, to users who share a room only, never to the user")
    func presence() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let carol = try await server.register("carol")
            _ = try await server.createRoom("team", token: alice.token, members: [bob.user.id])
            _ = try await server.createRoom("elsewhere", token: carol.token)
            let aliceSocket = try await server.connect(token: alice.token)
            let carolSocket = try await server.connect(token: carol.token)

            let bob1 = try await server.connect(token: bob.token)
            let online = try await aliceSocket.next(where: Self.isPresence(of: bob.user.id, "online"))
            #expect(online.roomId == nil, "presence has no roomId")
            let bob2 = try await server.connect(token: bob.token)
            try await bob2.roundTrip()

            await bob1.close()
            // Bob still has a connection: no offline yet, and no second online.
            try await bob2.roundTrip()
            #expect(await aliceSocket.nothing(for: .milliseconds(300)) { $0.type == "presence" && $0.userId == bob.user.id } == nil)

            await bob2.close()
            _ = try await aliceSocket.next(where: Self.isPresence(of: bob.user.id, "offline"))

            // Carol shares no room with bob: she heard nothing of him.
            #expect(carolSocket.pending.filter { $0.type == "presence" && $0.userId == bob.user.id }.isEmpty)
            #expect(await carolSocket.nothing(for: .milliseconds(100)) { $0.type == "presence" && $0.userId == bob.user.id } == nil)
            await aliceSocket.close()
            await carolSocket.close()
        }
    }

    @Test("presence never goes to the user's own connections")
    func presenceNotToSelf() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            _ = try await server.createRoom("team", token: alice.token, members: [bob.user.id])
            let watcher = try await server.connect(token: bob.token)
            let first = try await server.connect(token: alice.token)
            _ = try await watcher.next(where: Self.isPresence(of: alice.user.id, "online"))
            let second = try await server.connect(token: alice.token)
            await second.close()
            try await first.roundTrip()
            #expect(first.pending.filter { $0.type == "presence" && $0.userId == alice.user.id }.isEmpty)
            await first.close()
            _ = try await watcher.next(where: Self.isPresence(of: alice.user.id, "offline"))
            await watcher.close()
        }
    }

    @Test("join and leave notices: on a user's first subscription and last unsubscription, to other users only")
    func joinLeaveNotices() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("team", token: alice.token, members: [bob.user.id])
            let aliceSocket = try await server.connect(token: alice.token)
            try await aliceSocket.join(room.id)
            let isNotice: @Sendable (String) -> @Sendable (TestFrame) -> Bool = { type in
                { $0.type == type && $0.roomId == room.id && $0.userId == bob.user.id }
            }

            let bob1 = try await server.connect(token: bob.token)
            let bob2 = try await server.connect(token: bob.token)
            try await bob1.join(room.id)
            let joined = try await aliceSocket.next(where: isNotice("join"))
            #expect(joined.data?["user"]?["id"]?.stringValue == bob.user.id)
            #expect(joined.data?["user"]?["username"] == "bob")

            try await bob2.join(room.id)
            try await bob1.request("leave", roomId: room.id)
            // Bob is still subscribed through bob2: no second join, no leave.
            #expect(await aliceSocket.nothing(for: .milliseconds(300)) { $0.userId == bob.user.id && ($0.type == "join" || $0.type == "leave") } == nil)
            // Bob's own connections never hear of him.
            #expect(bob1.pending.filter { $0.type == "join" || $0.type == "leave" }.isEmpty)
            #expect(bob2.pending.filter { $0.userId == bob.user.id && ($0.type == "join" || $0.type == "leave") }.isEmpty)

            // Closing the last subscribed connection is leaving.
            await bob2.close()
            let left = try await aliceSocket.next(where: isNotice("leave"))
            #expect(left.data?["user"]?["id"]?.stringValue == bob.user.id)

            // And alice's own join was never sent to alice.
            #expect(aliceSocket.pending.filter { $0.userId == alice.user.id && ($0.type == "join" || $0.type == "leave") }.isEmpty)
            // Bob1 saw alice already there? Not a notice: she subscribed before. Bob1 gets no notice about alice's earlier join.
            await bob1.close()
            await aliceSocket.close()
        }
    }

    @Test("typing goes to other users' subscribed connections only; isTyping: false follows by itself after typingExpiry")
    func typingExpiry() async throws {
        try await withServer({ $0.typingExpiry = .milliseconds(300) }) { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("team", token: alice.token, members: [bob.user.id])
            let alice1 = try await server.connect(token: alice.token)
            let alice2 = try await server.connect(token: alice.token)
            let bobSocket = try await server.connect(token: bob.token)
            let bobIdle = try await server.connect(token: bob.token)
            try await alice1.join(room.id)
            try await alice2.join(room.id)
            try await bobSocket.join(room.id)

            let started = ContinuousClock.now
            expectAck(try await alice1.request("typing", roomId: room.id, data: ["isTyping": true]), roomId: room.id)
            let typing = try await bobSocket.next("typing")
            #expect(typing.data?["isTyping"] == true)
            #expect(typing.userId == alice.user.id)
            #expect(typing.roomId == room.id)

            let stopped = try await bobSocket.next(timeout: .seconds(5)) { $0.type == "typing" }
            let elapsed = ContinuousClock.now - started
            #expect(stopped.data?["isTyping"] == false)
            #expect(stopped.userId == alice.user.id)
            #expect(stopped.roomId == room.id)
            #expect(elapsed >= .milliseconds(250), "isTyping: false came after \(elapsed), before the expiry")

            // Neither of alice's connections, nor bob's unsubscribed one, saw any typing.
            #expect(alice1.pending.filter { $0.type == "typing" }.isEmpty)
            #expect(alice2.pending.filter { $0.type == "typing" }.isEmpty)
            #expect(bobIdle.pending.filter { $0.type == "typing" }.isEmpty)

            // An explicit false is relayed as well.
            try await alice1.request("typing", roomId: room.id, data: ["isTyping": true])
            try await alice1.request("typing", roomId: room.id, data: ["isTyping": false])
            #expect(try await bobSocket.next("typing").data?["isTyping"] == true)
            #expect(try await bobSocket.next("typing").data?["isTyping"] == false)
            for socket in [alice1, alice2, bobSocket, bobIdle] { await socket.close() }
        }
    }

    @Test("a new isTyping: true restarts the expiry: the automatic false comes typingExpiry after the last true")
    func typingExpiryRestarts() async throws {
        try await withServer({ $0.typingExpiry = .milliseconds(3_000) }) { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("team", token: alice.token, members: [bob.user.id])
            let aliceSocket = try await server.connect(token: alice.token)
            let bobSocket = try await server.connect(token: bob.token)
            try await bobSocket.join(room.id)

            let started = ContinuousClock.now
            try await aliceSocket.request("typing", roomId: room.id, data: ["isTyping": true])
            #expect(try await bobSocket.next("typing").data?["isTyping"] == true)
            // Pace the client: type again 1 s later (this waits for no event). The expiry is long
            // beside the pace so that a loaded machine cannot let the first true expire first.
            try await Task.sleep(until: started + .milliseconds(1_000))
            try await aliceSocket.request("typing", roomId: room.id, data: ["isTyping": true])
            #expect(try await bobSocket.next("typing").data?["isTyping"] == true)
            let stopped = try await bobSocket.next(timeout: .seconds(10)) { $0.type == "typing" }
            let elapsed = ContinuousClock.now - started
            #expect(stopped.data?["isTyping"] == false)
            #expect(elapsed >= .milliseconds(3_500), "the false came \(elapsed) after the first true: the second true did not restart the expiry")
            #expect(await bobSocket.nothing(for: .milliseconds(1_200)) { $0.type == "typing" } == nil, "a single automatic false")
            await aliceSocket.close()
            await bobSocket.close()
        }
    }

    @Test("reactions: counts, adding twice changes nothing, removing to zero disappears, the reactor gets the event too")
    func reactions() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("team", token: alice.token, members: [bob.user.id])
            let other = try await server.createRoom("other", token: alice.token, members: [bob.user.id])
            let aliceSocket = try await server.connect(token: alice.token)
            let bobSocket = try await server.connect(token: bob.token)
            try await aliceSocket.join(room.id)
            try await bobSocket.join(room.id)
            let message = try await aliceSocket.sendMessage("react", roomId: room.id)
            let elsewhere = try await server.post("elsewhere", roomId: other.id, token: alice.token)

            func react(_ socket: TestSocket, _ reaction: String, _ action: String, on messageId: String = message.id) async throws -> TestFrame {
                try await socket.request("reaction", roomId: room.id, data: ["messageId": .string(messageId), "reaction": .string(reaction), "action": .string(action)])
            }
            func counts(_ frame: TestFrame) throws -> [String: Int] { try frame.decode(ReactionAck.self).reactions }

            #expect(try counts(try await react(aliceSocket, "👍", "add")) == ["👍": 1])
            for socket in [aliceSocket, bobSocket] {
                let event = try await socket.next("reaction")
                let data = try event.decode(ReactionEventData.self)
                #expect(event.roomId == room.id)
                #expect(event.userId == alice.user.id)
                #expect(data == ReactionEventData(messageId: message.id, reaction: "👍", action: .add, reactions: ["👍": 1]))
            }

            let twice = try await react(aliceSocket, "👍", "add")
            expectAck(twice, roomId: room.id)
            #expect(try counts(twice) == ["👍": 1], "adding again changes nothing")
            // Nothing changed, so nothing is sent: the next event anyone sees is bob's.

            #expect(try counts(try await react(bobSocket, "👍", "add")) == ["👍": 2])
            let afterTwice = try await aliceSocket.next("reaction")
            #expect(afterTwice.userId == bob.user.id, "adding a reaction again sent an event: \(afterTwice.raw)")
            #expect(try counts(try await react(bobSocket, "❤️", "add")) == ["👍": 2, "❤️": 1])
            #expect(try counts(try await react(aliceSocket, "👍", "remove")) == ["👍": 1, "❤️": 1])
            let last = try await react(bobSocket, "👍", "remove")
            #expect(try counts(last) == ["❤️": 1], "a count of zero disappears")

            // The events reach both, the reactor included, with the new counts; the last one has no 👍 key.
            for socket in [aliceSocket, bobSocket] {
                let final = try await socket.next {
                    $0.type == "reaction" && $0.userId == bob.user.id && $0.data?["action"] == "remove"
                }
                let data = try final.decode(ReactionEventData.self)
                #expect(data.reactions == ["❤️": 1])
                #expect(data.reaction == "👍")
                #expect(data.messageId == message.id)
            }
            #expect(try await server.history(room.id, token: alice.token).messages.first?.reactions == ["❤️": 1])

            // Unknown message, and a message of another room: not_found.
            expectErrorFrame(try await react(aliceSocket, "👍", "add", on: "no-such-message"), "not_found", roomId: room.id)
            expectErrorFrame(try await react(aliceSocket, "👍", "add", on: elsewhere.id), "not_found", roomId: room.id)
            #expect(try await server.history(other.id, token: alice.token).messages.first?.reactions == [:])
            await aliceSocket.close()
            await bobSocket.close()
        }
    }

    @Test("room events go to member connections not subscribed to the room: new message, member change, creation")
    func roomEvents() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let carol = try await server.register("carol")
            let eve = try await server.register("eve")
            let room = try await server.createRoom("team", token: alice.token, members: [bob.user.id])
            let aliceIdle = try await server.connect(token: alice.token)
            let aliceJoined = try await server.connect(token: alice.token)
            let bobSocket = try await server.connect(token: bob.token)
            let carolSocket = try await server.connect(token: carol.token)
            let eveSocket = try await server.connect(token: eve.token)
            try await aliceJoined.join(room.id)
            try await bobSocket.join(room.id)

            // A new message.
            let sent = try await bobSocket.sendMessage("news", roomId: room.id)
            let event = try await aliceIdle.next { $0.type == "room" && $0.roomId == room.id }
            #expect(event.data?["room"]?["id"]?.stringValue == room.id)
            #expect(event.data?["room"]?["lastSeq"]?.integerValue == 1)
            #expect(event.data?["lastMessage"]?["id"]?.stringValue == sent.id)
            #expect(event.data?["lastMessage"]?["content"] == "news")

            // A member change: carol is added; she is now a member, so she hears of it too.
            _ = try await server.addMember(carol.user.id, to: room.id, token: bob.token).decode(RoomResponse.self)
            let change = try await aliceIdle.next { $0.type == "room" && $0.roomId == room.id }
            let members = change.data?["room"]?["members"]?.arrayValue?.compactMap(\.stringValue) ?? []
            #expect(Set(members) == [alice.user.id, bob.user.id, carol.user.id])
            let carolEvent = try await carolSocket.next { $0.type == "room" && $0.roomId == room.id }
            #expect(carolEvent.data?["room"]?["id"]?.stringValue == room.id)

            // A new room with eve: she hears of it.
            let created = try await server.createRoom("new", token: alice.token, members: [eve.user.id])
            let creation = try await eveSocket.next { $0.type == "room" && $0.roomId == created.id }
            #expect(creation.data?["room"]?["name"] == "new")

            // Subscribed connections and non-members never get room events for the room.
            try await aliceJoined.roundTrip()
            try await bobSocket.roundTrip()
            #expect(aliceJoined.pending.filter { $0.type == "room" && $0.roomId == room.id }.isEmpty)
            #expect(bobSocket.pending.filter { $0.type == "room" && $0.roomId == room.id }.isEmpty)
            #expect(await eveSocket.nothing(for: .milliseconds(200)) { $0.type == "room" && $0.roomId == room.id } == nil)
            for socket in [aliceIdle, aliceJoined, bobSocket, carolSocket, eveSocket] { await socket.close() }
        }
    }
}

extension JSONValue {
    /// The elements, when this is an array.
    var arrayValue: [JSONValue]? {
        if case .array(let value) = self { return value }
        return nil
    }
}
