import Foundation
import SwitchboardProtocol
import SwitchboardServer
import SwitchboardTesting
import Testing

@Suite("Malformed input: an error each time, and the connection goes on", .timeLimit(.minutes(1)))
struct MalformedInputTests {
    /// One bad frame: a text template (`ROOM` and `MSG` are replaced) or binary bytes, and the expected error.
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var text: String?
        var binary: [UInt8]?
        var code: String
        /// The `ref` the error must carry, when the frame had a readable one.
        var ref: String?
        /// Whether the error must carry the room's id.
        var echoesRoom: Bool
        var testDescription: String { name }

        static func text(_ name: String, _ text: String, _ code: String = "invalid", ref: String? = "bad", echoesRoom: Bool = false) -> Case {
            Case(name: name, text: text, binary: nil, code: code, ref: ref, echoesRoom: echoesRoom)
        }
    }

    static let cases: [Case] = [
        .text("not JSON", "hello there", ref: nil),
        .text("truncated JSON", #"{"type": "message", "roomId": "#, ref: nil),
        .text("a JSON array", #"[{"type": "ping"}]"#, ref: nil),
        .text("a JSON string", #""ping""#, ref: nil),
        .text("a JSON number", "42", ref: nil),
        .text("JSON null", "null", ref: nil),
        .text("type missing", #"{"roomId": "ROOM", "data": {"content": "hi"}, "ref": "bad"}"#, echoesRoom: true),
        .text("type a number", #"{"type": 7, "roomId": "ROOM", "ref": "bad"}"#, echoesRoom: true),
        .text("type null", #"{"type": null, "ref": "bad"}"#),
        .text("unknown type", #"{"type": "dance", "roomId": "ROOM", "ref": "bad"}"#, "unknown_type", echoesRoom: true),
        .text("roomId a number", #"{"type": "message", "roomId": 12, "data": {"content": "hi"}, "ref": "bad"}"#),
        .text("roomId missing for message", #"{"type": "message", "data": {"content": "hi"}, "ref": "bad"}"#),
        .text("roomId missing for join", #"{"type": "join", "ref": "bad"}"#),
        .text("message data a string", #"{"type": "message", "roomId": "ROOM", "data": "hi", "ref": "bad"}"#, echoesRoom: true),
        .text("message data an array", #"{"type": "message", "roomId": "ROOM", "data": ["hi"], "ref": "bad"}"#, echoesRoom: true),
        .text("message data missing", #"{"type": "message", "roomId": "ROOM", "ref": "bad"}"#, echoesRoom: true),
        .text("content a number", #"{"type": "message", "roomId": "ROOM", "data": {"content": 5}, "ref": "bad"}"#, echoesRoom: true),
        .text("content missing", #"{"type": "message", "roomId": "ROOM", "data": {"text": "hi"}, "ref": "bad"}"#, echoesRoom: true),
        .text("clientId a number", #"{"type": "message", "roomId": "ROOM", "data": {"content": "hi", "clientId": 5}, "ref": "bad"}"#, echoesRoom: true),
        .text("typing data a string", #"{"type": "typing", "roomId": "ROOM", "data": "yes", "ref": "bad"}"#, echoesRoom: true),
        .text("typing data missing", #"{"type": "typing", "roomId": "ROOM", "ref": "bad"}"#, echoesRoom: true),
        .text("isTyping a string", #"{"type": "typing", "roomId": "ROOM", "data": {"isTyping": "true"}, "ref": "bad"}"#, echoesRoom: true),
        .text("isTyping missing", #"{"type": "typing", "roomId": "ROOM", "data": {}, "ref": "bad"}"#, echoesRoom: true),
        .text("reaction data a number", #"{"type": "reaction", "roomId": "ROOM", "data": 1, "ref": "bad"}"#, echoesRoom: true),
        .text("reaction action bogus", #"{"type": "reaction", "roomId": "ROOM", "data": {"messageId": "MSG", "reaction": "👍", "action": "bogus"}, "ref": "bad"}"#, echoesRoom: true),
        .text("reaction without messageId", #"{"type": "reaction", "roomId": "ROOM", "data": {"reaction": "👍", "action": "add"}, "ref": "bad"}"#, echoesRoom: true),
        .text("reaction a number", #"{"type": "reaction", "roomId": "ROOM", "data": {"messageId": "MSG", "reaction": 1, "action": "add"}, "ref": "bad"}"#, echoesRoom: true),
        .text("join data a string", #"{"type": "join", "roomId": "ROOM", "data": "now", "ref": "bad"}"#, echoesRoom: true),
        Case(name: "a binary frame", text: nil, binary: Array(#"{"type": "ping"}"#.utf8), code: "invalid", ref: nil, echoesRoom: false),
    ]

    @Test("a bad frame gets its error; the connection stays open, works, and nothing is stored", arguments: cases)
    func badFrame(_ badCase: Case) async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            let socket = try await server.connect(token: alice.token)
            try await socket.join(room.id)
            let first = try await socket.sendMessage("first", roomId: room.id)
            _ = try await socket.messages(1, in: room.id)

            if let text = badCase.text {
                try await socket.send(raw: text.replacingOccurrences(of: "ROOM", with: room.id).replacingOccurrences(of: "MSG", with: first.id))
            } else if let binary = badCase.binary {
                try await socket.send(binary: binary)
            }
            let error = try await socket.next(timeout: .seconds(5)) { $0.type == "error" }
            expectErrorFrame(error, badCase.code, ref: badCase.ref, roomId: badCase.echoesRoom ? room.id : nil)
            if badCase.ref == nil { #expect(error.ref == nil) }

            // The connection goes on: a normal round trip works.
            let second = try await socket.sendMessage("second", roomId: room.id)
            #expect(second.seq == 2)
            #expect(try await socket.messages(1, in: room.id).first?.id == second.id)
            #expect(!socket.isClosed)
            // Exactly one error, and nothing else was stored or reacted.
            #expect(socket.pending.filter { $0.type == "error" || $0.type == "ack" || $0.type == "message" || $0.type == "reaction" }.isEmpty)
            let stored = try await server.history(room.id, token: alice.token).messages
            #expect(stored.map(\.content) == ["first", "second"])
            #expect(stored.first?.reactions == [:])
            await socket.close()
        }
    }

    @Test("the client's timestamp and userId are ignored whatever their type")
    func ignoredFields() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("team", token: alice.token, members: [bob.user.id])
            let socket = try await server.connect(token: alice.token)
            let pong = try await socket.answer(toRaw: #"{"type": "ping", "timestamp": "noon", "userId": 5, "ref": "p"}"#, ref: "p")
            #expect(pong.type == "pong")
            let ack = try await socket.answer(
                toRaw: json(#"{"type": "message", "roomId": "ROOM", "data": {"content": "mine"}, "timestamp": -1, "userId": {"id": "\#(bob.user.id)"}, "ref": "m"}"#, roomId: room.id),
                ref: "m"
            )
            expectAck(ack, roomId: room.id)
            let message = try ack.decode(MessageAck.self).message
            #expect(message.userId == alice.user.id)
            #expect(message.createdAt > 1_600_000_000_000)
            #expect((ack.json["timestamp"]?.integerValue ?? 0) > 1_600_000_000_000)
            let ack2 = try await socket.answer(
                toRaw: json(#"{"type": "message", "roomId": "ROOM", "data": {"content": "also mine"}, "timestamp": null, "userId": "\#(bob.user.id)", "ref": "n"}"#, roomId: room.id),
                ref: "n"
            )
            #expect(try ack2.decode(MessageAck.self).message.userId == alice.user.id)
            await socket.close()
        }
    }

    @Test("many bad frames in a row still leave the connection open")
    func manyBadFrames() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            let socket = try await server.connect(token: alice.token)
            for badCase in Self.cases {
                if let text = badCase.text {
                    try await socket.send(raw: text.replacingOccurrences(of: "ROOM", with: room.id))
                } else if let binary = badCase.binary {
                    try await socket.send(binary: binary)
                }
            }
            for _ in Self.cases { _ = try await socket.next("error") }
            let message = try await socket.sendMessage("alive", roomId: room.id)
            #expect(message.seq == 1)
            #expect(!socket.isClosed)
            await socket.close()
        }
    }
}
