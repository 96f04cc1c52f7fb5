import Foundation
import SwitchboardProtocol
import SwitchboardServer
import SwitchboardTesting
import Testing

@Suite("Long polling: GET /api/events", .timeLimit(.minutes(1)))
struct PollingTests {
    /// A long-polling client: its token and current cursor.
    final class Poller: @unchecked Sendable {
        let server: TestServer
        let token: String
        var cursor: String

        /// Starts a session: a poll without a cursor.
        init(server: TestServer, token: String) async throws {
            self.server = server
            self.token = token
            let answer = try await server.poll(token: token)
            let response = try answer.decode(EventsResponse.self)
            guard response.events.isEmpty else { throw TestFailure("the first poll returned events: \(answer.text)") }
            self.cursor = response.cursor
        }

        /// One poll from the current cursor; moves the cursor.
        func poll(timeoutMs: Int = 5_000) async throws -> [Envelope<JSONValue>] {
            let response = try await server.poll(token: token, query: "cursor=\(PollingTests.escaped(cursor))&timeoutMs=\(timeoutMs)").decode(EventsResponse.self)
            cursor = response.cursor
            return response.events
        }

        /// Polls until `done` holds for the events gathered so far; returns them all.
        func events(deadline: Duration = .seconds(20), until done: ([Envelope<JSONValue>]) -> Bool) async throws -> [Envelope<JSONValue>] {
            let end = ContinuousClock.now + deadline
            var events: [Envelope<JSONValue>] = []
            while !done(events) {
                guard ContinuousClock.now < end else { throw TestFailure("polling gave up with \(events.count) events") }
                events += try await poll()
            }
            return events
        }

        /// Polls until `count` message events of `roomId` arrived.
        func messages(_ count: Int, in roomId: String, deadline: Duration = .seconds(20)) async throws -> [Message] {
            let events = try await events(deadline: deadline) { events in
                events.filter { $0.type == .message && $0.roomId == roomId }.count >= count
            }
            return try events.filter { $0.type == .message && $0.roomId == roomId }.map(PollingTests.message)
        }
    }

    static func message(_ event: Envelope<JSONValue>) throws -> Message {
        try Wire.decode(Message.self, from: try Wire.encode(event.data))
    }

    static func isTypingTrue(_ event: Envelope<JSONValue>) -> Bool {
        event.type == .typing && event.data?["isTyping"] == true
    }

    static func escaped(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? text
    }

    @Test("a poll without a cursor answers at once with no events and a cursor")
    func firstPoll() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            try await server.post("before the session", roomId: room.id, token: alice.token)
            let started = ContinuousClock.now
            let answer = try await server.poll(token: alice.token)
            let response = try answer.decode(EventsResponse.self)
            #expect(ContinuousClock.now - started < .seconds(3), "the first poll must not wait")
            #expect(response.events.isEmpty)
            #expect(!response.cursor.isEmpty)
            expectHTTPError(try await server.poll(token: "bogus"), 401, .unauthorized)
        }
    }

    @Test("events come in order, the caller's own messages included, as a subscribed connection would get them")
    func eventsInOrder() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("team", token: alice.token, members: [bob.user.id])
            let poller = try await Poller(server: server, token: alice.token)

            try await server.post("alice over http", roomId: room.id, token: alice.token)
            let bobSocket = try await server.connect(token: bob.token)
            try await bobSocket.join(room.id)
            try await bobSocket.sendMessage("bob over ws", roomId: room.id)
            try await server.post("bob over http", roomId: room.id, token: bob.token)
            try await bobSocket.request("typing", roomId: room.id, data: ["isTyping": true])

            let events = try await poller.events { events in
                events.filter { $0.type == .message }.count >= 3 && events.contains(where: Self.isTypingTrue)
            }
            let messages = try events.filter { $0.type == .message }.map(Self.message)
            #expect(messages.map(\.content) == ["alice over http", "bob over ws", "bob over http"])
            #expect(seqs(messages) == [1, 2, 3])
            #expect(messages.map(\.userId) == [alice.user.id, bob.user.id, bob.user.id])
            #expect(events.filter { $0.type == .message }.allSatisfy { $0.roomId == room.id && $0.timestamp > 0 })
            // The typing of another user comes after the messages it followed.
            let typingIndex = try #require(events.firstIndex(where: Self.isTypingTrue))
            let lastMessageIndex = try #require(events.lastIndex { $0.type == .message })
            #expect(typingIndex > lastMessageIndex)
            #expect(events[typingIndex].userId == bob.user.id)
            #expect(events[typingIndex].roomId == room.id)
            // Nothing was delivered twice.
            #expect(events.filter { $0.type == .message }.count == 3)
            await bobSocket.close()
        }
    }

    @Test("no event is lost or repeated between polls while messages keep arriving")
    func noneLost() async throws {
        try await withServer(unlimitedRate) { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("busy", token: alice.token, members: [bob.user.id])
            let poller = try await Poller(server: server, token: alice.token)
            let total = 150
            let sending = Task {
                let socket = try await server.connect(token: bob.token)
                for index in 1...total {
                    try await socket.sendMessage("n \(index)", roomId: room.id)
                }
                await socket.close()
            }
            let messages = try await poller.messages(total, in: room.id, deadline: .seconds(40))
            try await sending.value
            #expect(seqs(messages) == Array(1...total))
            #expect(messages.map(\.content) == (1...total).map { "n \($0)" })
            // Nothing more is pending.
            let rest = try await poller.poll(timeoutMs: 200)
            #expect(rest.filter { $0.type == .message }.isEmpty)

            // A backlog that piles up while nobody polls comes whole, too.
            let socket = try await server.connect(token: bob.token)
            try await socket.fill(room.id, count: 60, prefix: "backlog")
            let backlog = try await poller.messages(60, in: room.id)
            #expect(seqs(backlog) == Array((total + 1)...(total + 60)))
            await socket.close()
        }
    }

    @Test("an unreadable cursor is 400 invalid")
    func badCursor() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            for cursor in ["garbage", "zzz.5", "", "...", "-1"] {
                let answer = try await server.poll(token: alice.token, query: "cursor=\(Self.escaped(cursor))&timeoutMs=100")
                expectHTTPError(answer, 400, .invalid)
            }
        }
    }

    @Test("a poll with a small timeoutMs and no events answers empty after about that time")
    func smallTimeout() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let poller = try await Poller(server: server, token: alice.token)
            let started = ContinuousClock.now
            let events = try await poller.poll(timeoutMs: 300)
            let elapsed = ContinuousClock.now - started
            #expect(events.isEmpty)
            #expect(elapsed >= .milliseconds(250), "a poll answers early only with events (\(elapsed))")
            #expect(elapsed < .seconds(5))
            // The session goes on after an empty answer.
            let room = try await server.createRoom("team", token: alice.token)
            try await server.post("after the timeout", roomId: room.id, token: alice.token)
            #expect(try await poller.messages(1, in: room.id).first?.content == "after the timeout")
        }
    }

    @Test("timeoutMs is capped by the longest poll, and a poll without it waits the default")
    func timeoutCaps() async throws {
        try await withServer({ $0.maxPollTimeout = .milliseconds(400); $0.defaultPollTimeout = .milliseconds(300) }) { server in
            let alice = try await server.register("alice")
            let poller = try await Poller(server: server, token: alice.token)
            var started = ContinuousClock.now
            #expect(try await poller.poll(timeoutMs: 60_000).isEmpty)
            var elapsed = ContinuousClock.now - started
            #expect(elapsed >= .milliseconds(350) && elapsed < .seconds(10), "capped poll took \(elapsed)")

            started = ContinuousClock.now
            let answer = try await server.poll(token: alice.token, query: "cursor=\(Self.escaped(poller.cursor))")
            elapsed = ContinuousClock.now - started
            #expect(try answer.decode(EventsResponse.self).events.isEmpty)
            #expect(elapsed >= .milliseconds(250) && elapsed < .seconds(10), "default poll took \(elapsed)")
        }
    }

    @Test("a waiting poll answers as soon as an event arrives")
    func answersEarly() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("team", token: alice.token, members: [bob.user.id])
            let poller = try await Poller(server: server, token: alice.token)
            let started = ContinuousClock.now
            let waiting = Task { try await poller.poll(timeoutMs: 30_000) }
            try await server.post("wake up", roomId: room.id, token: bob.token)
            var events = try await waiting.value
            if events.filter({ $0.type == .message }).isEmpty { events = try await poller.poll(timeoutMs: 30_000) }
            #expect(ContinuousClock.now - started < .seconds(10))
            #expect(events.contains { $0.type == .message && $0.data?["content"] == "wake up" })
        }
    }

    @Test("a room the caller joins after the session started is followed too")
    func laterRoom() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let poller = try await Poller(server: server, token: alice.token)
            let room = try await server.createRoom("later", token: bob.token, members: [alice.user.id])
            try await server.post("in the new room", roomId: room.id, token: bob.token)
            let messages = try await poller.messages(1, in: room.id)
            #expect(messages.first?.content == "in the new room")
        }
    }
}
