import Testing

@testable import SwitchboardProtocol

@Suite("Hardening: input checks")
struct HardeningInputTests {
    @Test("lone surrogates are found only as escapes inside strings")
    func surrogateRepair() {
        func repaired(_ text: String) -> String? { IncomingFrame.replacingLoneSurrogates(in: Array(text.utf8)).map { String(decoding: $0, as: UTF8.self) } }
        #expect(repaired(#"{"a":"x\ud800y"}"#) == #"{"a":"x\uFFFDy"}"#)
        #expect(repaired(#"{"a":"\udc00"}"#) == #"{"a":"\uFFFD"}"#)
        #expect(repaired(#"{"a":"\ud83d\ude00"}"#) == nil)
        #expect(repaired(#"{"a":"\\ud800"}"#) == nil)
        #expect(repaired(#"{"a":"\ud800\ud800"}"#) == #"{"a":"\uFFFD\uFFFD"}"#)
    }


    @Test("content refuses the C0 controls but tab and new line, DEL and C1; names refuse every control and bidi override")
    func controlCharacters() throws {
        for bad in ["a\u{0}b", "esc\u{1B}[0m", "cr\r", "del\u{7F}", "c1\u{85}", "vt\u{0B}"] {
            #expect(throws: ProtocolError.self, "\(bad.debugDescription)") { try Validation.content(bad) }
        }
        #expect(try Validation.content(" tab\tand\nline ") == "tab\tand\nline")
        #expect(try Validation.content("emoji 😀 and bidi \u{202E} in content") == "emoji 😀 and bidi \u{202E} in content")
        for bad in ["rtl\u{202E}gnp.exe", "iso\u{2066}late", "tab\tname", "new\nline", "bell\u{7}"] {
            #expect(throws: ProtocolError.self, "\(bad.debugDescription)") { try Validation.displayName(bad) }
            #expect(throws: ProtocolError.self, "\(bad.debugDescription)") { try Validation.roomName(bad) }
        }
        #expect(try Validation.roomName(" Zebra Crossing ") == "Zebra Crossing")
    }

    @Test("an escaped lone surrogate is invalid, and the answer keeps the frame's ref and roomId")
    func loneSurrogateKeepsRef() {
        let frame = IncomingFrame(bytes: Array(#"{"type":"message","roomId":"r_1","ref":"x","data":{"content":"bad \ud800 half"}}"#.utf8))
        #expect(frame.ref == "x")
        #expect(frame.roomId == "r_1")
        guard case .failure(let error) = frame.request else {
            Issue.record("accepted a lone surrogate")
            return
        }
        #expect(error.code == .invalid)
    }
}
