import SwitchboardProtocol
import Testing

@Suite("Encoding and decoding", .timeLimit(.minutes(1)))
struct CodingTests {
    @Test("a message encodes every field, absent ones as null, and decodes back")
    func messageRoundTrip() throws {
        let message = Message(id: "m1", roomId: "r1", seq: 3, userId: "u1", content: "hi", createdAt: 10)
        let json = try Wire.decode(JSONValue.self, from: try Wire.encode(message))
        #expect(json["clientId"] == .null)
        #expect(json["meta"] == .null)
        #expect(json["deleted"] == false)
        #expect(json["reactions"] == [:])
        #expect(try Wire.decode(Message.self, from: try Wire.encode(message)) == message)
    }

    @Test("a room summary is the room's fields plus lastMessage and unread in one object")
    func roomSummary() throws {
        let room = Room(id: "r1", name: "general", kind: .group, isPublic: true, createdAt: 1, lastSeq: 0, members: ["u1"])
        let summary = RoomSummary(room: room, lastMessage: nil, unread: 2)
        let json = try Wire.decode(JSONValue.self, from: try Wire.encode(summary))
        #expect(json["name"] == "general")
        #expect(json["unread"] == 2)
        #expect(json["lastMessage"] == .null)
        #expect(try Wire.decode(RoomSummary.self, from: try Wire.encode(summary)) == summary)
    }

    @Test("an envelope omits absent fields")
    func envelope() throws {
        let envelope = Envelope(type: .presence, data: PresenceData(status: .online), timestamp: 5, userId: "u1")
        let json = try Wire.decode(JSONValue.self, from: try Wire.encode(envelope))
        #expect(json["roomId"] == nil)
        #expect(json["ref"] == nil)
        #expect(json["data"]?["status"] == "online")
    }

    @Test("server frames decode into events")
    func serverEvents() throws {
        let message = Message(id: "m1", roomId: "r1", seq: 1, userId: "u1", content: "hi", createdAt: 1)
        let frame = try Wire.encode(Envelope(type: .message, roomId: "r1", data: message, timestamp: 2, userId: "u1"))
        guard case .message(let decoded) = try ServerEvent(bytes: frame) else { Issue.record("not a message"); return }
        #expect(decoded == message)

        let ack = try Wire.encode(Envelope(type: .ack, roomId: "r1", data: MessageAck(message: message, duplicate: true), timestamp: 2, ref: "q"))
        guard case .ack(let reply) = try ServerEvent(bytes: ack) else { Issue.record("not an ack"); return }
        #expect(reply.ref == "q")
        #expect(try reply.decode(MessageAck.self).duplicate)

        let error = try Wire.encode(Envelope(type: .error, data: ProtocolError(.rateLimited, "slow", retryAfterMs: 50), timestamp: 2, ref: "z"))
        guard case .error(let ref, _, let decodedError) = try ServerEvent(bytes: error) else { Issue.record("not an error"); return }
        #expect(ref == "z")
        #expect(decodedError.retryAfterMs == 50)
    }

    @Test("JSON values keep integers, doubles and nesting")
    func jsonValues() throws {
        let value: JSONValue = ["a": [1, 2.5, "x", true, nil], "b": ["c": 9_007_199_254_740_993]]
        #expect(try Wire.decode(JSONValue.self, from: try Wire.encode(value)) == value)
    }

    @Test("error codes map to the contract's HTTP statuses")
    func statuses() {
        #expect(ErrorCode.invalid.httpStatus == 400)
        #expect(ErrorCode.rateLimited.httpStatus == 429)
        #expect(ErrorCode.tooLarge.httpStatus == 413)
        #expect(ErrorCode.notFound.rawValue == "not_found")
    }
}
