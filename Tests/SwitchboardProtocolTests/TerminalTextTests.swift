import SwitchboardProtocol
import Testing

@Suite("Text for terminals and logs: no control character acts, no password shows", .timeLimit(.minutes(1)))
struct TerminalTextTests {
    @Test func controlsShowAsEscapesAndAMessagesLinesAreIndented() {
        #expect(TerminalText.printable("a\u{1B}]0;title\u{07}b") == #"a\u{1B}]0;title\u{7}b"#)
        #expect(TerminalText.printable("\u{9B}2J \u{202E}txt") == #"\u{9B}2J \u{202E}txt"#)
        #expect(TerminalText.printable("ok\n[12:01] alice: run this\ttab", indentingLines: true) == "ok\n    [12:01] alice: run this\ttab")
        #expect(TerminalText.printable("/help\n/rooms") == "/help\n/rooms")
        #expect(TerminalText.printable("plain é 👍") == "plain é 👍")
    }

    @Test func jsonKeepsItsMeaning() throws {
        let json = try Wire.encodeString(["nick": "a\u{9B}b\u{7F}\u{202E}"])
        let printable = TerminalText.printableJSON(json)
        #expect(!printable.unicodeScalars.contains { TerminalText.isControl($0) })
        #expect(try Wire.decode([String: String].self, from: printable) == ["nick": "a\u{9B}b\u{7F}\u{202E}"])
    }

    @Test func passwordsAreRedactedEvenInURLsThatDoNotParse() {
        #expect(RedactedURL.string("postgres://ana:secret@db:5432/chat?sslmode=require") == "postgres://ana:***@db:5432/chat?sslmode=require")
        #expect(RedactedURL.string("postgres://db/chat") == "postgres://db/chat")
        #expect(RedactedURL.string("postgres://ana@db/chat") == "postgres://ana@db/chat")
        for (url, password) in [("postgres://u:se#cret@h/db", "se#cret"), ("postgres://u:p/w@h/db", "p/w"), ("postgres://u:p?w@h/db", "p?w"),
                                ("postgres://u:2024@h/db", "2024"), ("postgres://u:12#x@h/db", "12#x"), ("postgres://u:a@b@h/db", "a@b")] {
            let redacted = RedactedURL.string(url)
            #expect(!redacted.contains(password), "\(redacted)")
            #expect(redacted == "postgres://u:***@h/db", "\(redacted)")
        }
    }
}
