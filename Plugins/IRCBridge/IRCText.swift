import SwitchboardProtocol

// Text between chat and IRC: formatting codes, splitting to the 512-byte line limit, nick templates.

/// What to do with IRC formatting codes (bold, colours, …) in text relayed to chat.
public enum IRCFormattingMode: String, Sendable, Codable {
    /// Remove every code; chat sees plain text.
    case strip
    /// Bold, italic, strike-through and monospace become Markdown (`**`, `_`, `~~`, `` ` ``); the rest is removed.
    case markdown
}

/// IRC formatting codes (mIRC style: \u{02} bold, \u{03} colours, \u{0F} reset, …).
public enum IRCFormatting {
    /// `text` without formatting codes, or with the ones Markdown can show mapped; and without the
    /// control characters chat refuses in content (a bell, a lone CTCP marker, a bare CR, C1
    /// controls from a Latin-1 line), so that chat takes what IRC says.
    ///
    /// ```swift
    /// IRCFormatting.convert("\u{02}bold\u{02} \u{03}4,1red", mode: .strip)     // "bold red"
    /// IRCFormatting.convert("\u{02}bold\u{02}", mode: .markdown)              // "**bold**"
    /// ```
    public static func convert(_ text: String, mode: IRCFormattingMode = .strip) -> String {
        let scalars = Array(text.unicodeScalars)
        var result = String.UnicodeScalarView()
        var open: [String] = []  // Markdown markers open, innermost last
        func toggle(_ marker: String) {
            guard mode == .markdown else { return }
            if let index = open.lastIndex(of: marker) {
                // Close the inner ones first so that the Markdown nests, then reopen them.
                let inner = open[(index + 1)...]
                for other in inner.reversed() { result.append(contentsOf: other.unicodeScalars) }
                result.append(contentsOf: marker.unicodeScalars)
                open.remove(at: index)
                for other in inner { result.append(contentsOf: other.unicodeScalars) }
            } else {
                result.append(contentsOf: marker.unicodeScalars)
                open.append(marker)
            }
        }
        func closeAll() {
            for marker in open.reversed() { result.append(contentsOf: marker.unicodeScalars) }
            open.removeAll()
        }
        var index = 0
        func skip(while allowed: (Unicode.Scalar) -> Bool, atMost count: Int) -> Int {
            var taken = 0
            while taken < count, index < scalars.count, allowed(scalars[index]) {
                index += 1
                taken += 1
            }
            return taken
        }
        while index < scalars.count {
            let scalar = scalars[index]
            index += 1
            switch scalar {
            case "\u{02}": toggle("**")
            case "\u{1D}": toggle("_")
            case "\u{1E}": toggle("~~")
            case "\u{11}": toggle("`")
            case "\u{1F}", "\u{16}": break  // underline and reverse have no Markdown
            case "\u{0F}": closeAll()
            case "\u{03}", "\u{04}":
                // \u{03}FG[,BG] with one or two digits; \u{04}RRGGBB[,RRGGBB] in hex.
                let isHex = scalar == "\u{04}"
                let digit: (Unicode.Scalar) -> Bool = isHex ? { $0.properties.isASCIIHexDigit } : { ("0"..."9").contains($0) }
                let width = isHex ? 6 : 2
                if skip(while: digit, atMost: width) > 0, index + 1 < scalars.count, scalars[index] == ",",
                    digit(scalars[index + 1])
                {
                    index += 1
                    _ = skip(while: digit, atMost: width)
                }
            case _ where Validation.isForbiddenInContent(scalar): break
            default: result.append(scalar)
            }
        }
        closeAll()
        return String(result)
    }
}

/// Splitting text into IRC lines that fit a byte budget.
public enum IRCTextSplitter {
    /// `text` cut into pieces of at most `maxBytes` UTF-8 bytes each, never inside a grapheme
    /// cluster (an emoji with its modifiers, a letter with its accents), at a space when one is near.
    ///
    /// A single grapheme cluster larger than the budget (rare: long runs of combining marks) is cut
    /// between Unicode scalars, as nothing else fits.
    public static func split(_ text: String, maxBytes: Int) -> [String] {
        precondition(maxBytes >= 4, "a line must hold at least one UTF-8 scalar")
        var pieces: [String] = []
        var current = ""
        var currentBytes = 0
        var lastSpace: String.Index?  // in `current`, just after a space
        for character in text {
            let size = character.utf8.count
            if size > maxBytes {
                if !current.isEmpty { pieces.append(current) }
                current = ""
                currentBytes = 0
                lastSpace = nil
                for scalar in character.unicodeScalars {
                    let scalarSize = String(scalar).utf8.count
                    if currentBytes + scalarSize > maxBytes {
                        pieces.append(current)
                        current = ""
                        currentBytes = 0
                    }
                    current.unicodeScalars.append(scalar)
                    currentBytes += scalarSize
                }
                continue
            }
            if currentBytes + size > maxBytes {
                // Prefer a word boundary in the last third of the line; otherwise cut here.
                if let lastSpace, current.utf8.distance(from: current.startIndex, to: lastSpace) * 3 >= maxBytes * 2 {
                    let head = String(current[..<lastSpace])
                    let tail = String(current[lastSpace...])
                    pieces.append(String(head.dropLast()))  // the space itself goes
                    current = tail
                    currentBytes = tail.utf8.count
                } else {
                    pieces.append(current)
                    current = ""
                    currentBytes = 0
                }
                lastSpace = nil
            }
            current.append(character)
            currentBytes += size
            if character == " " { lastSpace = current.endIndex }
        }
        if !current.isEmpty || pieces.isEmpty { pieces.append(current) }
        return pieces
    }

    /// The bytes left for the text of a `PRIVMSG target :text` line, as other users receive it:
    /// 512 minus tags, `:nick!user@host `, the command, the target and CR LF.
    ///
    /// When the server has not told us our user and host, the longest usual ones are assumed
    /// (10 for the user, 63 for the host), so the line never gets cut by the server.
    public static func textBudget(
        nick: String,
        userAndHost: String? = nil,
        command: String = "PRIVMSG",
        target: String,
        tags: [String: String] = [:]
    ) -> Int {
        let source = nick.utf8.count + 1 + (userAndHost?.utf8.count ?? (10 + 1 + 63))
        var tagBytes = 0
        if !tags.isEmpty {
            tagBytes = IRCMessage(tags: tags, command: "X").line.utf8.count - 1  // "@…;… " without "X"
        }
        return 512 - tagBytes - (1 + source + 1) - command.utf8.count - 1 - target.utf8.count - 2 - 2
    }
}

/// The message a chat reply answers, as a reply shows it on IRC.
public struct ReplyQuote: Sendable, Hashable {
    /// Who wrote it: the chat user's name, or the IRC nick of a relayed message.
    public var author: String
    /// Its text.
    public var content: String

    /// A quote.
    public init(author: String, content: String) {
        self.author = author
        self.content = content
    }
}

/// How chat messages look on IRC: a template with `{nick}`, `{nopingnick}`, `{room}` and `{text}`.
///
/// ```swift
/// let format = RelayFormat(template: "<{nopingnick}> {text}")
/// format.render(nick: "ann", room: "general", text: "hi")  // "<a\u{200B}nn> hi"
/// ```
public struct RelayFormat: Sendable, Hashable, Codable {
    /// The template of one relayed line. Default `<{nick}> {text}`.
    public var template: String
    /// The template of a relayed `/me` (sent as CTCP ACTION). Default `{nick} {text}`.
    public var actionTemplate: String
    /// The most IRC lines one chat message becomes, the note of what was cut included (at least 2). Default 5.
    public var maxLines: Int
    /// The most characters of the answered message a reply quotes, as `(re bob: the start…) text`;
    /// 0 relays replies without a quote. Default 50.
    public var quoteLength: Int

    /// A format; every field has a default.
    public init(template: String = "<{nick}> {text}", actionTemplate: String = "{nick} {text}", maxLines: Int = 5, quoteLength: Int = 50) {
        self.template = template
        self.actionTemplate = actionTemplate
        self.maxLines = max(2, maxLines)
        self.quoteLength = max(0, quoteLength)
    }

    /// `text` behind a short quote of the message it answers: `(re bob: the start of…) text`, on one
    /// line (the quote's line breaks become spaces), cut after `quoteLength` characters. The quote
    /// is part of the text, so `lines` splits it like the rest to fit 512 bytes.
    ///
    /// ```swift
    /// RelayFormat(quoteLength: 10).quoting(ReplyQuote(author: "bob", content: "is anyone around today?"), in: "yes")
    /// // "(re bob: is anyone…) yes"
    /// ```
    public func quoting(_ quote: ReplyQuote?, in text: String) -> String {
        guard let quote, quoteLength > 0 else { return text }
        var content = Substring(quote.content)
        var author = quote.author + ":"
        if content.hasPrefix("/me ") {
            content = content.dropFirst(4)
            author = "* " + quote.author
        }
        let words = content.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        let quoted = words.count > quoteLength ? words.prefix(quoteLength).trimmingSuffix { $0 == " " } + "…" : Substring(words)
        return "(re \(author) \(quoted)) \(text)"
    }

    /// `nick` with a zero-width space after its first character, so that IRC clients do not
    /// highlight the person of that nick each time their chat self is relayed.
    public static func noPing(_ nick: String) -> String {
        guard let first = nick.first else { return nick }
        return String(first) + "\u{200B}" + nick.dropFirst()
    }

    /// The template filled in.
    public func render(nick: String, room: String, text: String, action: Bool = false) -> String {
        fill(action ? actionTemplate : template, nick: nick, room: room, text: text)
    }

    /// The IRC lines for one chat message: one per line of text (blank ones skipped), each split to
    /// fit `budget` bytes with the template around it; past `maxLines`, the last line says how many were cut.
    public func lines(nick: String, room: String, text: String, action: Bool = false, budget: Int) -> [String] {
        let template = action ? actionTemplate : template
        let frame = fill(template, nick: nick, room: room, text: "").utf8.count
        let textBudget = max(16, budget - frame)
        var pieces: [String] = []
        for line in text.split(whereSeparator: \.isNewline) {
            let trimmed = line.trimmingSuffix { $0 == " " || $0 == "\t" }
            guard !trimmed.isEmpty else { continue }
            pieces += IRCTextSplitter.split(String(trimmed), maxBytes: textBudget)
        }
        if pieces.count > maxLines {
            let cut = pieces.count - (maxLines - 1)
            pieces = Array(pieces.prefix(maxLines - 1)) + ["[\(cut) more line\(cut == 1 ? "" : "s") not shown]"]
        }
        return pieces.map { fill(template, nick: nick, room: room, text: $0) }
    }

    /// Fills the placeholders in one pass, so that a nick or text containing `{text}` stays as it is.
    private func fill(_ template: String, nick: String, room: String, text: String) -> String {
        var result = ""
        var rest = Substring(template)
        while let open = rest.firstIndex(of: "{") {
            result += rest[..<open]
            rest = rest[open...]
            guard let close = rest.firstIndex(of: "}") else { break }
            let value: String? =
                switch rest[rest.index(after: open)..<close] {
                case "nick": nick
                case "nopingnick": Self.noPing(nick)
                case "room": room
                case "text": text
                default: nil
                }
            if let value {
                result += value
                rest = rest[rest.index(after: close)...]
            } else {
                result += "{"
                rest = rest.dropFirst()
            }
        }
        return result + rest
    }
}

extension Substring {
    fileprivate func trimmingSuffix(while predicate: (Character) -> Bool) -> Substring {
        var result = self
        while let last = result.last, predicate(last) { result.removeLast() }
        return result
    }
}
