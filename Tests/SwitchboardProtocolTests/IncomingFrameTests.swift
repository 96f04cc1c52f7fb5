import SwitchboardProtocol
import Testing

@Suite("Parsing client frames", .timeLimit(.minutes(1)))
struct IncomingFrameTests {
    private func parse(_ text: String, limits: Limits = Limits()) -> IncomingFrame {
        IncomingFrame(bytes: Array(text.utf8), limits: limits)
    }

    @Test("each request type parses into its request")
    func requests() throws {
        #expect(try parse(#"{"type":"join","roomId":"r1","data":{"since":5},"ref":"a"}"#).request.get() == .join(roomId: "r1", since: 5))
        #expect(try parse(#"{"type":"join","roomId":"r1"}"#).request.get() == .join(roomId: "r1", since: nil))
        #expect(try parse(#"{"type":"leave","roomId":"r1"}"#).request.get() == .leave(roomId: "r1"))
        #expect(try parse(#"{"type":"typing","roomId":"r1","data":{"isTyping":true}}"#).request.get() == .typing(roomId: "r1", isTyping: true))
        #expect(try parse(#"{"type":"ping","data":[1,"x"]}"#).request.get() == .ping([1, "x"]))
        let reaction = try parse(#"{"type":"reaction","roomId":"r1","data":{"messageId":"m1","reaction":"👍","action":"add"}}"#).request.get()
        #expect(reaction == .reaction(roomId: "r1", ReactionData(messageId: "m1", reaction: "👍", action: .add)))
    }

    @Test("a message is trimmed and keeps clientId, replyTo and meta")
    func message() throws {
        let frame = parse(#"{"type":"message","roomId":"r1","ref":"x","data":{"content":"  hi  ","clientId":"c1","replyTo":"m0","meta":{"k":1}}}"#)
        #expect(frame.ref == "x")
        #expect(frame.roomId == "r1")
        #expect(try frame.request.get() == .message(roomId: "r1", SendMessageData(content: "hi", clientId: "c1", replyTo: "m0", meta: ["k": 1])))
    }

    @Test("timestamp and userId are ignored whatever their type")
    func ignoredFields() throws {
        let frame = parse(#"{"type":"leave","roomId":"r1","timestamp":"yesterday","userId":42}"#)
        #expect(try frame.request.get() == .leave(roomId: "r1"))
    }

    static let refused: [(String, ErrorCode)] = [
        ("not json", .invalid),
        ("[1,2]", .invalid),
        (#"{"roomId":"r1"}"#, .invalid),
        (#"{"type":5}"#, .invalid),
        (#"{"type":"dance","roomId":"r1"}"#, .unknownType),
        (#"{"type":"join","roomId":7}"#, .invalid),
        (#"{"type":"join"}"#, .invalid),
        (#"{"type":"join","roomId":"r1","data":{"since":-1}}"#, .invalid),
        (#"{"type":"join","roomId":"r1","data":{"since":"1"}}"#, .invalid),
        (#"{"type":"join","roomId":"r1","data":3}"#, .invalid),
        (#"{"type":"message","roomId":"r1","data":"hi"}"#, .invalid),
        (#"{"type":"message","roomId":"r1","data":{"content":5}}"#, .invalid),
        (#"{"type":"message","roomId":"r1","data":{"content":"   "}}"#, .invalid),
        (#"{"type":"message","roomId":"r1","data":{"content":"a\u0000b"}}"#, .invalid),
        (#"{"type":"message","roomId":"r1","data":{"content":"hi","clientId":7}}"#, .invalid),
        (#"{"type":"message","roomId":"r1","data":{"content":"hi","meta":[1]}}"#, .invalid),
        (#"{"type":"typing","roomId":"r1","data":{"isTyping":"yes"}}"#, .invalid),
        (#"{"type":"typing","roomId":"r1"}"#, .invalid),
        (#"{"type":"reaction","roomId":"r1","data":{"messageId":"m","reaction":"x","action":"bogus"}}"#, .invalid),
        (#"{"type":"reaction","roomId":"r1","data":{"messageId":"m","reaction":"","action":"add"}}"#, .invalid),
        (#"{"type":"leave","roomId":"r1","ref":5}"#, .invalid),
    ]

    @Test("malformed frames are refused with the contract's code", arguments: refused)
    func refusedFrames(text: String, code: ErrorCode) {
        switch parse(text).request {
        case .success(let request): Issue.record("accepted \(text) as \(request)")
        case .failure(let error): #expect(error.code == code, "\(text): \(error)")
        }
    }

    @Test("content length counts Unicode scalars after trimming")
    func contentLength() throws {
        var limits = Limits()
        limits.maxContentLength = 3
        #expect(try Validation.content(" é🙂x ", limits: limits) == "é🙂x")
        #expect(throws: ProtocolError.self) { try Validation.content("abcd", limits: limits) }
    }

    @Test("meta over the limit is refused")
    func metaLimit() {
        let big = String(repeating: "x", count: 1100)
        let frame = parse(#"{"type":"message","roomId":"r","data":{"content":"hi","meta":{"k":"\#(big)"}}}"#)
        #expect(throws: ProtocolError.self) { try frame.request.get() }
    }

    @Test("a clientId of 64 characters is accepted and one of 65 refused")
    func clientIdLimit() {
        let ok = String(repeating: "c", count: 64)
        #expect((try? parse(#"{"type":"message","roomId":"r","data":{"content":"hi","clientId":"\#(ok)"}}"#).request.get()) != nil)
        #expect((try? parse(#"{"type":"message","roomId":"r","data":{"content":"hi","clientId":"\#(ok)c"}}"#).request.get()) == nil)
    }

    @Test("usernames follow the contract's alphabet and length")
    func usernames() {
        #expect((try? Validation.username("ana.b_c-9")) != nil)
        #expect((try? Validation.username("")) == nil)
        #expect((try? Validation.username("has space")) == nil)
        #expect((try? Validation.username(String(repeating: "a", count: 33))) == nil)
    }
}
