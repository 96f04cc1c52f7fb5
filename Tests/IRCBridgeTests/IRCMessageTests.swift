import Testing

@testable import IRCBridge

@Suite("IRC lines")
struct IRCMessageTests {
    @Test func parsesSourceCommandAndTrailing() throws {
        let message = try IRCMessage(parsing: ":ann!a@host.example PRIVMSG #chat :hello there\r\n")
        #expect(message.source == "ann!a@host.example")
        #expect(message.sourceNick == "ann")
        #expect(message.command == "PRIVMSG")
        #expect(message.parameters == ["#chat", "hello there"])
    }

    @Test func parsesNumericsAndMiddleParameters() throws {
        let message = try IRCMessage(parsing: ":irc.test.local 005 relay NICKLEN=30 CHANTYPES=# :are supported")
        #expect(message.command == "005")
        #expect(message.parameters == ["relay", "NICKLEN=30", "CHANTYPES=#", "are supported"])
        #expect(message.sourceNick == "irc.test.local")
    }

    @Test func keepsAnEmptyTrailingParameter() throws {
        let message = try IRCMessage(parsing: ":ann!a@h TOPIC #chat :")
        #expect(message.parameters == ["#chat", ""])
        #expect(message.line == ":ann!a@h TOPIC #chat :")
    }

    @Test func ignoresTrailingSpacesAndRunsOfSpaces() throws {
        let message = try IRCMessage(parsing: ":server  MODE   #chat +nt   \r\n")
        #expect(message.parameters == ["#chat", "+nt"])
        let trailing = try IRCMessage(parsing: "PRIVMSG #chat :spaces kept   ")
        #expect(trailing.parameters == ["#chat", "spaces kept   "])
    }

    @Test func parsesTagsWithEscapes() throws {
        let message = try IRCMessage(parsing: #"@time=2026-11-30T12:00:00.000Z;msgid=abc;+example=a\:b\sc\\d\re\nf\x;flag;end=\ :ann PRIVMSG #c :x"#)
        #expect(message.tags["time"] == "2026-11-30T12:00:00.000Z")
        #expect(message.tags["msgid"] == "abc")
        #expect(message.tags["+example"] == "a;b c\\d\re\nfx")
        #expect(message.tags["flag"] == "")
        #expect(message.tags["end"] == "")
    }

    @Test func tagsRoundTrip() throws {
        let original = IRCMessage(tags: ["+reply": "a b;c\\d", "label": "1"], command: "PRIVMSG", parameters: ["#c", "hi"])
        let parsed = try IRCMessage(parsing: original.line)
        #expect(parsed == original)
        #expect(original.line == #"@+reply=a\sb\:c\\d;label=1 PRIVMSG #c hi"#)
    }

    @Test func serializesTheLastParameterWithAColonOnlyWhenNeeded() {
        #expect(IRCMessage(command: "nick", parameters: ["relay"]).line == "NICK relay")
        #expect(IRCMessage(command: "PRIVMSG", parameters: ["#c", ":)"]).line == "PRIVMSG #c ::)")
        #expect(IRCMessage(command: "USER", parameters: ["u", "0", "*", "Real Name"]).line == "USER u 0 * :Real Name")
        #expect(IRCMessage(command: "PRIVMSG", parameters: ["#c", ""]).line == "PRIVMSG #c :")
    }

    @Test func neverPutsLineBreaksOnTheWire() {
        let message = IRCMessage(command: "PRIVMSG", parameters: ["#c", "hi\r\nQUIT :pwned\0"])
        #expect(message.line == "PRIVMSG #c :hiQUIT :pwned")
        #expect(message.wireSize == message.line.utf8.count + 2)
    }

    @Test func refusesLinesWithoutACommand() {
        #expect(throws: IRCParseError.self) { try IRCMessage(parsing: ":server.only") }
        #expect(throws: IRCParseError.self) { try IRCMessage(parsing: "") }
        #expect(throws: IRCParseError.self) { try IRCMessage(parsing: "PRIV-MSG x") }
    }

    @Test func parsesCTCP() {
        #expect(CTCP(text: "\u{01}ACTION waves\u{01}") == CTCP(command: "ACTION", argument: "waves"))
        #expect(CTCP(text: "\u{01}VERSION") == CTCP(command: "VERSION"))
        #expect(CTCP(text: "plain text") == nil)
        #expect(CTCP(command: "ACTION", argument: "waves").text == "\u{01}ACTION waves\u{01}")
    }
}
