import Testing
import SwitchboardProtocol

@Suite("Open wire values: what a newer server adds decodes, and goes back out unchanged", .timeLimit(.minutes(1)))
struct OpenWireValueTests {
    @Test("an unknown error code decodes, keeps its text, and encodes back unchanged")
    func unknownErrorCode() throws {
        let json = #"{"code":"brand_new","message":"a newer server says no"}"#
        let error = try Wire.decode(ProtocolError.self, from: json)
        #expect(error.code.rawValue == "brand_new")
        #expect(error.code != .internal)
        #expect(!ErrorCode.allCases.contains(error.code))
        #expect(error.code.httpStatus == 500)
        #expect(try Wire.decode(ProtocolError.self, from: try Wire.encode(error)) == error)
    }

    @Test("known error codes decode to their constants and keep their wire spelling")
    func knownErrorCodes() throws {
        for code in ErrorCode.allCases {
            #expect(try Wire.decode(ErrorCode.self, from: try Wire.encode(code)) == code)
        }
        #expect(try Wire.decode(ErrorCode.self, from: #""rate_limited""#) == .rateLimited)
        #expect(try Wire.encodeString(ErrorCode.notFound) == #""not_found""#)
    }

    @Test("an error event with an unknown code is an error event, not an unreadable frame")
    func unknownErrorEvent() throws {
        let frame = #"{"type":"error","ref":"7","data":{"code":"brand_new","message":"no"},"timestamp":1}"#
        guard case .error(let ref, _, let error) = try ServerEvent(bytes: Array(frame.utf8)) else {
            Issue.record("not decoded as an error")
            return
        }
        #expect(ref == "7")
        #expect(error.code == ErrorCode(rawValue: "brand_new"))
    }

    @Test("an unknown presence status decodes in its event")
    func unknownPresence() throws {
        let frame = #"{"type":"presence","userId":"u1","data":{"status":"away"},"timestamp":1}"#
        guard case .presence(let userId, let status) = try ServerEvent(bytes: Array(frame.utf8)) else {
            Issue.record("not decoded as presence")
            return
        }
        #expect(userId == "u1")
        #expect(status.rawValue == "away")
        #expect(status != .online && status != .offline)
    }

    @Test("an unknown room kind decodes in a room, and round-trips")
    func unknownRoomKind() throws {
        let json = #"{"id":"r1","name":"x","kind":"thread","isPublic":false,"createdAt":0,"lastSeq":0,"members":[]}"#
        let room = try Wire.decode(Room.self, from: json)
        #expect(room.kind == RoomKind(rawValue: "thread"))
        #expect(try Wire.decode(Room.self, from: try Wire.encode(room)) == room)
        #expect(try Wire.decode(RoomKind.self, from: #""direct""#) == .direct)
    }

    @Test("an unknown reaction action decodes in a reaction event")
    func unknownReactionAction() throws {
        let frame = #"{"type":"reaction","roomId":"r1","userId":"u1","data":{"messageId":"m1","reaction":"+1","action":"replace","reactions":{}},"timestamp":1}"#
        guard case .reaction(_, _, let data) = try ServerEvent(bytes: Array(frame.utf8)) else {
            Issue.record("not decoded as a reaction")
            return
        }
        #expect(data.action.rawValue == "replace")
    }

    @Test("a server still accepts only the known reaction actions from clients")
    func clientReactionActionChecked() {
        let frame = #"{"type":"reaction","roomId":"r1","ref":"1","data":{"messageId":"m1","reaction":"+1","action":"replace"}}"#
        let parsed = IncomingFrame(bytes: frame.utf8, limits: Limits())
        #expect(throws: ProtocolError.self) { try parsed.request.get() }
        let good = IncomingFrame(bytes: #"{"type":"reaction","roomId":"r1","ref":"1","data":{"messageId":"m1","reaction":"+1","action":"remove"}}"#.utf8, limits: Limits())
        #expect(throws: Never.self) { try good.request.get() }
    }
}
