import Foundation
import SwitchboardProtocol
import SwitchboardServer
import SwitchboardTesting
import Testing

@Suite("Limits: sizes, rates, frame size and floods", .timeLimit(.minutes(1)))
struct LimitsTests {
    /// A `message` data refused as `invalid`, with what it tests.
    struct BadMessage: Sendable, CustomTestStringConvertible {
        var name: String
        var data: JSONValue
        var testDescription: String { name }
    }

    static let badMessages: [BadMessage] = [
        BadMessage(name: "content of 4001 characters", data: ["content": .string(String(repeating: "a", count: 4001))]),
        BadMessage(name: "content of 4001 scalars in 2001 characters (combining accents)", data: ["content": .string(String(repeating: "e\u{301}", count: 2000) + "x")]),
        BadMessage(name: "content empty", data: ["content": ""]),
        BadMessage(name: "content white space only", data: ["content": " \n\t \u{3000} "]),
        BadMessage(name: "content with U+0000", data: ["content": "a\u{0}b"]),
        BadMessage(name: "clientId of 65 characters", data: ["content": "hi", "clientId": .string(String(repeating: "c", count: 65))]),
        // PostgreSQL cannot store U+0000: in a group commit it would fail the other senders' messages too.
        BadMessage(name: "clientId with U+0000", data: ["content": "hi", "clientId": "a\u{0}b"]),
        BadMessage(name: "meta over 1 KiB", data: ["content": "hi", "meta": ["blob": .string(String(repeating: "x", count: 1100))]]),
        BadMessage(name: "meta not an object", data: ["content": "hi", "meta": "text"]),
    ]

    @Test("an invalid message over WebSocket is refused as invalid and nothing is stored or sent", arguments: badMessages)
    func invalidMessageOverWebSocket(_ bad: BadMessage) async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            let socket = try await server.connect(token: alice.token)
            try await socket.join(room.id)
            let answer = try await socket.request("message", roomId: room.id, data: bad.data)
            expectErrorFrame(answer, "invalid", roomId: room.id)
            let ok = try await socket.sendMessage("fine", roomId: room.id)
            #expect(ok.seq == 1, "the refused message took a seq")
            #expect(try await socket.messages(1, in: room.id).first?.content == "fine")
            #expect(try await server.history(room.id, token: alice.token).messages.map(\.content) == ["fine"])
            await socket.close()
        }
    }

    @Test("an invalid message over HTTP is 400 invalid and nothing is stored", arguments: badMessages)
    func invalidMessageOverHTTP(_ bad: BadMessage) async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            expectHTTPError(try await server.postMessage(room.id, token: alice.token, bad.data), 400, .invalid)
            #expect(try await server.history(room.id, token: alice.token).messages.isEmpty)
        }
    }

    @Test("the edges are accepted: 4000 scalars, trimmed content, 64-character clientId, meta of nearly 1 KiB relayed untouched")
    func edgesAccepted() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            let socket = try await server.connect(token: alice.token)

            let emoji = String(repeating: "😀", count: 4000)
            #expect(try await socket.sendMessage(emoji, roomId: room.id).content == emoji, "4000 scalars of 4 bytes each")
            let padded = "   " + String(repeating: "a", count: 4000) + " \n "
            #expect(try await socket.sendMessage(padded, roomId: room.id).content == String(repeating: "a", count: 4000), "the trimmed text is stored")
            let clientId = String(repeating: "c", count: 64)
            #expect(try await socket.sendMessage("hi", roomId: room.id, clientId: clientId).clientId == clientId)
            let meta: JSONValue = ["bridge": ["network": "irc", "channel": "#rust", "nick": "ana"], "pad": .string(String(repeating: "x", count: 900))]
            #expect(try Wire.encode(meta).count <= 1024)
            let ack = try await socket.request("message", roomId: room.id, data: ["content": "bridged", "meta": meta])
            expectAck(ack, roomId: room.id)
            #expect(try ack.decode(MessageAck.self).message.meta == meta)
            let stored = try await server.history(room.id, token: alice.token).messages
            #expect(stored.map(\.seq) == [1, 2, 3, 4])
            #expect(stored.last?.meta == meta)
            #expect(stored.first?.content.unicodeScalars.count == 4000)
            await socket.close()
        }
    }

    @Test("reactions: 32 bytes accepted, 33 bytes and empty refused as invalid")
    func reactionSize() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            let socket = try await server.connect(token: alice.token)
            let message = try await socket.sendMessage("react", roomId: room.id)
            func react(_ reaction: String) async throws -> TestFrame {
                try await socket.request("reaction", roomId: room.id, data: ["messageId": .string(message.id), "reaction": .string(reaction), "action": "add"])
            }
            let longest = String(repeating: "😀", count: 8)
            #expect(longest.utf8.count == 32)
            expectAck(try await react(longest), roomId: room.id)
            expectErrorFrame(try await react(longest + "a"), "invalid", roomId: room.id)
            expectErrorFrame(try await react(String(repeating: "a", count: 33)), "invalid", roomId: room.id)
            expectErrorFrame(try await react(""), "invalid", roomId: room.id)
            #expect(try await server.history(room.id, token: alice.token).messages.first?.reactions == [longest: 1])
            await socket.close()
        }
    }

    @Test("rate limit: a fast burst gets acks then rate_limited errors with retryAfterMs; only acked messages are stored")
    func rateLimit() async throws {
        // A slow refill, so that the count does not depend on how fast the machine is.
        try await withServer({ $0.messageBurst = 30; $0.messagesPerSecond = 2 }) { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            let socket = try await server.connect(token: alice.token)
            let requests = (1...60).map { index -> (type: String, roomId: String?, data: JSONValue?) in
                ("message", room.id, ["content": .string("burst \(index)")])
            }
            let started = ContinuousClock.now
            let answers = try await socket.pipeline(requests)
            let seconds = Double((ContinuousClock.now - started).components.seconds) + 1
            let acked = answers.filter { $0.type == "ack" }
            let limited = answers.filter { $0.errorCode == "rate_limited" }
            #expect(acked.count + limited.count == 60, "other answers: \(answers.filter { $0.type != "ack" && $0.errorCode != "rate_limited" }.map(\.raw))")
            #expect(acked.count >= 30, "the burst of 30 must pass")
            #expect(Double(acked.count) <= 30 + 2 * seconds + 1, "\(acked.count) acked in about \(seconds) s")
            #expect(limited.count >= 1)
            for error in limited {
                let retryAfterMs = error.data?["retryAfterMs"]?.integerValue
                #expect(retryAfterMs.map { $0 > 0 && $0 <= 1_000 } == true, "\(error.raw)")
                #expect(error.roomId == room.id)
            }
            #expect(!socket.isClosed, "fewer than 50 in a row must not close the connection")

            let stored = try await server.allMessages(room.id, token: alice.token)
            #expect(stored.count == acked.count)
            let ackedIds = Set(try acked.map { try $0.decode(MessageAck.self).message.id })
            #expect(Set(stored.map(\.id)) == ackedIds)
            #expect(seqs(stored) == Array(1...max(1, stored.count)))
            await socket.close()
        }
    }

    @Test("the message rate limit is per user: across connections and HTTP")
    func rateLimitPerUser() async throws {
        try await withServer({ $0.messageBurst = 4; $0.messagesPerSecond = 0.01 }) { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("team", token: alice.token, members: [bob.user.id])
            let first = try await server.connect(token: alice.token)
            let second = try await server.connect(token: alice.token)
            try await first.sendMessage("1", roomId: room.id)
            try await second.sendMessage("2", roomId: room.id)
            try await server.post("3", roomId: room.id, token: alice.token)
            try await first.sendMessage("4", roomId: room.id)
            // Alice's bucket is empty, whichever way she sends.
            expectErrorFrame(try await second.request("message", roomId: room.id, data: ["content": "5"]), "rate_limited", roomId: room.id)
            expectHTTPError(try await server.postMessage(room.id, token: alice.token, ["content": "6"]), 429, .rateLimited)
            // Bob has a bucket of his own.
            try await server.post("bob", roomId: room.id, token: bob.token)
            #expect(try await server.history(room.id, token: bob.token).messages.map(\.content) == ["1", "2", "3", "4", "bob"])
            await first.close()
            await second.close()
        }
    }

    @Test("with the default limits a burst of 30 messages passes")
    func defaultBurst() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            let socket = try await server.connect(token: alice.token)
            let sent = try await socket.fill(room.id, count: 30)
            #expect(seqs(sent) == Array(1...30))
            await socket.close()
        }
    }

    @Test("typing is rate limited too")
    func typingRateLimit() async throws {
        try await withServer({ $0.typingBurst = 5; $0.typingPerSecond = 0.5 }) { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            let socket = try await server.connect(token: alice.token)
            let requests = (1...10).map { _ -> (type: String, roomId: String?, data: JSONValue?) in ("typing", room.id, ["isTyping": true]) }
            let answers = try await socket.pipeline(requests)
            #expect(answers.prefix(5).allSatisfy { $0.type == "ack" })
            #expect(answers.filter { $0.errorCode == "rate_limited" }.count >= 4)
            await socket.close()
        }
    }

    @Test("a frame over the size limit closes only that connection, with 1009")
    func frameTooLarge() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("team", token: alice.token, members: [bob.user.id])
            let big = try await server.connect(token: alice.token)
            let other = try await server.connect(token: bob.token)
            try await other.join(room.id)

            let padding = String(repeating: "x", count: 70 * 1024)
            try await big.send(raw: json(#"{"type": "message", "roomId": "ROOM", "data": {"content": "hi", "meta": {"pad": "\#(padding)"}}, "ref": "big"}"#, roomId: room.id))
            #expect(try await big.closed(timeout: .seconds(5)) == 1009)

            let message = try await other.sendMessage("still here", roomId: room.id)
            #expect(try await other.messages(1, in: room.id).first?.id == message.id)
            #expect(try await server.history(room.id, token: bob.token).messages.map(\.content) == ["still here"])
        }
    }

    @Test("a frame just under the size limit is read (and refused by the content rules only)")
    func frameUnderLimit() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            let socket = try await server.connect(token: alice.token)
            let padding = String(repeating: "x", count: 60 * 1024)
            let answer = try await socket.answer(toRaw: json(#"{"type": "message", "roomId": "ROOM", "data": {"content": "\#(padding)"}, "ref": "near"}"#, roomId: room.id), ref: "near")
            expectErrorFrame(answer, "invalid", ref: "near", roomId: room.id)
            try await socket.roundTrip()
            #expect(!socket.isClosed)
            await socket.close()
        }
    }

    @Test("50 rate-limited envelopes in a row close the connection with 1008")
    func flood() async throws {
        try await withServer({ $0.messageBurst = 1; $0.messagesPerSecond = 0.01 }) { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            let socket = try await server.connect(token: alice.token)
            try await socket.sendMessage("the only one", roomId: room.id)
            for index in 1...60 {
                try await socket.send("message", roomId: room.id, data: ["content": .string("flood \(index)")], ref: "f\(index)")
            }
            #expect(try await socket.closed(timeout: .seconds(10)) == 1008)
            let limited = socket.pending.filter { $0.errorCode == "rate_limited" }
            #expect(limited.count >= 49 && limited.count <= 50, "\(limited.count) rate_limited answers before the close")
            #expect(try await server.history(room.id, token: alice.token).messages.map(\.content) == ["the only one"])
            // The user is not locked out: a new connection works.
            let again = try await server.connect(token: alice.token)
            try await again.roundTrip()
            await again.close()
        }
    }

    @Test("rate-limited answers that are not in a row do not close the connection")
    func notInARow() async throws {
        try await withServer({ $0.messageBurst = 1; $0.messagesPerSecond = 0.01 }) { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            let socket = try await server.connect(token: alice.token)
            try await socket.sendMessage("the only one", roomId: room.id)
            for round in 1...2 {
                for index in 1...45 {
                    try await socket.send("message", roomId: room.id, data: ["content": .string("r\(round) \(index)")], ref: "r\(round)-\(index)")
                }
                try await socket.roundTrip()
            }
            #expect(!socket.isClosed)
            #expect(socket.pending.filter { $0.errorCode == "rate_limited" }.count == 90)
            await socket.close()
        }
    }
}
