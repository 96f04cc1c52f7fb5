import SwitchboardProtocol
import Testing

@Suite("Text for terminals and logs: no control character acts, no password shows", .timeLimit(.minutes(1)))
struct TerminalTextTests {
    @Test func controlsShowAsEscapesAndLinesAfterTheFirstAreIndented() {
        #expect(TerminalText.printable("a\u{1B}]0;title\u{07}b") == #"a\u{1B}]0;title\u{7}b"#)
        #expect(TerminalText.printable("\u{9B}2J \u{202E}txt") == #"\u{9B}2J \u{202E}txt"#)
        #expect(TerminalText.printable("ok\n[12:01] alice: run this\ttab") == "ok\n    [12:01] alice: run this\ttab")
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
        for url in ["postgres://u:se#cret@h/db", "postgres://u:p/w@h/db", "postgres://u:p?w@h/db"] {
            let redacted = RedactedURL.string(url)
            #expect(!redacted.contains("se#cret") && !redacted.contains("p/w") && !redacted.contains("p?w"), "\(redacted)")
            #expect(redacted.hasPrefix("postgres://***@h/db"), "\(redacted)")
        }
    }
}
