import Testing

@testable import IRCBridge

@Suite("IRC text")
struct IRCTextTests {
    @Test func stripsFormattingCodes() {
        let text = "\u{02}bold\u{02} \u{03}4,12red on blue\u{03} \u{03}07orange \u{1D}it\u{1F}u\u{16}r\u{0F} \u{04}FF0000,00FF00hex\u{03}, 5"
        #expect(IRCFormatting.convert(text) == "bold red on blue orange itur hex, 5")
        // A comma after a colour without a digit after it is text.
        #expect(IRCFormatting.convert("\u{03}3,text") == ",text")
    }

    @Test func removesTheControlCharactersChatRefuses() {
        // Bell, a lone CTCP marker, escape, a bare CR, DEL, and C1 controls (what cp1252 bytes
        // decoded as Latin-1 become); tab and line feed are content.
        let text = "a\u{07}b\u{01}c\u{1B}[0md\re\u{7F}f\u{85}g\u{9F}h\ti\nj"
        #expect(IRCFormatting.convert(text) == "abc[0mdefgh\ti\nj")
        #expect(IRCFormatting.convert(text, mode: .markdown) == "abc[0mdefgh\ti\nj")
    }

    @Test func mapsFormattingToMarkdown() {
        #expect(IRCFormatting.convert("\u{02}bold\u{02} and \u{1D}it\u{1D}", mode: .markdown) == "**bold** and _it_")
        #expect(IRCFormatting.convert("\u{02}open to the end", mode: .markdown) == "**open to the end**")
        #expect(IRCFormatting.convert("\u{02}a\u{1D}b\u{0F}c", mode: .markdown) == "**a_b_**c")
    }

    @Test func splitsByBytesNeverInsideAGraphemeCluster() {
        let family = "👨‍👩‍👧‍👦"  // 25 bytes, one grapheme cluster
        let text = String(repeating: "é", count: 7) + family + "ü"
        let pieces = IRCTextSplitter.split(text, maxBytes: 30)
        #expect(pieces.joined() == text)
        #expect(pieces.allSatisfy { $0.utf8.count <= 30 })
        #expect(pieces.contains(family) || pieces.contains { $0.hasSuffix(family) || $0.hasPrefix(family) })
        for piece in pieces { #expect(piece.utf8.count > 0) }
    }

    @Test func splitsAtASpaceNearTheEnd() {
        let pieces = IRCTextSplitter.split("aaaaaaaa bbbbbbbbbbbbbb", maxBytes: 10)
        #expect(pieces == ["aaaaaaaa", "bbbbbbbbbb", "bbbb"])
    }

    @Test func cutsAnOversizedClusterBetweenScalars() {
        let zalgo = "a" + String(repeating: "\u{0301}", count: 10)  // 21 bytes, one cluster
        let pieces = IRCTextSplitter.split(zalgo, maxBytes: 8)
        #expect(pieces.joined() == zalgo)
        #expect(pieces.allSatisfy { $0.utf8.count <= 8 })
    }

    @Test func budgetLeavesRoomForTheSourceAndTarget() {
        let budget = IRCTextSplitter.textBudget(nick: "relay", userAndHost: "~u@host", target: "#chat")
        let line = ":relay!~u@host PRIVMSG #chat :" + String(repeating: "x", count: budget) + "\r\n"
        #expect(line.utf8.count == 512)
        let tagged = IRCTextSplitter.textBudget(nick: "relay", userAndHost: "~u@host", target: "#chat", tags: ["+draft/reply": "abc"])
        #expect(budget - tagged == "@+draft/reply=abc ".utf8.count)
    }

    @Test func rendersTheTemplate() {
        let format = RelayFormat(template: "[{room}] <{nopingnick}> {text}")
        #expect(format.render(nick: "ann", room: "general", text: "{nick} hi") == "[general] <a\u{200B}nn> {nick} hi")
        #expect(RelayFormat().render(nick: "ann", room: "r", text: "waves", action: true) == "ann waves")
        #expect(RelayFormat(template: "{unknown} {text}").render(nick: "a", room: "r", text: "t") == "{unknown} t")
    }

    @Test func linesSplitEveryLineWithThePrefixAndCutWithANote() {
        let format = RelayFormat(maxLines: 4)
        let long = String(repeating: "ü", count: 30)  // 60 bytes
        let lines = format.lines(nick: "ann", room: "r", text: "one\n\n  \r\n\(long)\nthree\nfour\nfive", budget: 40)
        #expect(lines.count == 4)
        #expect(lines.allSatisfy { $0.hasPrefix("<ann> ") && $0.utf8.count <= 40 })
        #expect(lines[0] == "<ann> one")
        #expect(lines[3] == "<ann> [3 more lines not shown]")
        let short = format.lines(nick: "ann", room: "r", text: "a\nb", budget: 40)
        #expect(short == ["<ann> a", "<ann> b"])
    }

    @Test func repliesQuoteTheStartOfTheAnsweredMessage() {
        let format = RelayFormat(quoteLength: 20)
        let question = ReplyQuote(author: "bob", content: "is anyone\naround to help with the build?")
        #expect(format.quoting(question, in: "yes") == "(re bob: is anyone around to…) yes")
        #expect(format.quoting(ReplyQuote(author: "bob", content: "short"), in: "ok") == "(re bob: short) ok")
        #expect(format.quoting(ReplyQuote(author: "bob", content: "/me waves"), in: "hi") == "(re * bob waves) hi")
        #expect(format.quoting(nil, in: "plain") == "plain")
        #expect(RelayFormat(quoteLength: 0).quoting(question, in: "yes") == "yes")
        // Emoji and accents are cut as whole characters.
        #expect(RelayFormat(quoteLength: 3).quoting(ReplyQuote(author: "b", content: "é👍🏾ü🇫🇷x"), in: "t") == "(re b: é👍🏾ü…) t")
    }

    @Test func aQuotedReplyFitsTheLineBudget() {
        let format = RelayFormat(maxLines: 20, quoteLength: 200)
        let quote = ReplyQuote(author: "bob", content: String(repeating: "👩🏽‍🚀", count: 200))
        let text = format.quoting(quote, in: String(repeating: "ß", count: 300))
        let lines = format.lines(nick: "ann", room: "r", text: text, budget: 400)
        #expect(lines.count > 2)
        #expect(lines.allSatisfy { $0.utf8.count <= 400 })
        // A line may end at a space, which then goes.
        #expect(lines.map { $0.dropFirst("<ann> ".count) }.joined().filter { $0 != " " } == text.filter { $0 != " " })
    }
}

@Suite("Flood control and backoff")
struct FloodControlTests {
    @Test func burstThenOneLinePerInterval() {
        var bucket = TokenBucket(FloodControl(burst: 3, interval: .seconds(2)))
        let delays = (0..<5).map { _ in bucket.reserve(at: .zero) }
        #expect(delays == [.zero, .zero, .zero, .seconds(2), .seconds(4)])
        // After the queue drained and a quiet period, the burst is back.
        #expect(bucket.reserve(at: .seconds(100)) == .zero)
        #expect(bucket.reserve(at: .seconds(100)) == .zero)
        #expect(bucket.reserve(at: .seconds(100)) == .zero)
        #expect(bucket.reserve(at: .seconds(100)) == .seconds(2))
    }

    @Test func partlyRefilled() {
        var bucket = TokenBucket(FloodControl(burst: 1, interval: .seconds(1)))
        #expect(bucket.reserve(at: .zero) == .zero)
        #expect(bucket.reserve(at: .milliseconds(300)) == .milliseconds(700))
    }

    @Test func offNeverDelays() {
        var bucket = TokenBucket(.off)
        #expect((0..<1000).allSatisfy { _ in bucket.reserve(at: .zero) == .zero })
    }

    @Test func backoffGrowsIsCappedAndJittered() {
        let backoff = ReconnectBackoff(initial: .seconds(1), maximum: .seconds(30), jitter: 0.5)
        #expect(backoff.delay(afterFailures: 1, random: 0.5) == .seconds(1))
        #expect(backoff.delay(afterFailures: 4, random: 0.5) == .seconds(8))
        #expect(backoff.delay(afterFailures: 50, random: 0.5) == .seconds(30))
        #expect(backoff.delay(afterFailures: 4, random: 0) == .seconds(4))
        #expect(backoff.delay(afterFailures: 4, random: 0.999) > .seconds(11))
        #expect(backoff.delay(afterFailures: 50, random: 0.999) == .seconds(30))
    }
}
