// One IRC protocol line, as RFC 1459/2812 frame it and IRCv3 extends it with tags.

/// A message on the IRC wire: optional IRCv3 tags, an optional source, a command and its parameters.
///
/// Parsing is lenient where real servers are (runs of spaces, trailing spaces, an empty trailing
/// parameter, tag values with escapes); serializing is strict: CR, LF and NUL never reach the wire,
/// so chat text cannot inject commands.
///
/// ```swift
/// let message = try IRCMessage(parsing: "@time=2026-01-01T00:00:00Z :ann!a@h PRIVMSG #chat :hi there")
/// message.command      // "PRIVMSG"
/// message.parameters   // ["#chat", "hi there"]
/// IRCMessage(command: "PRIVMSG", parameters: ["#chat", "hello"]).line  // "PRIVMSG #chat :hello"
/// ```
public struct IRCMessage: Sendable, Hashable {
    /// IRCv3 message tags, unescaped. A tag without a value has the empty string.
    public var tags: [String: String]
    /// The source (prefix) without its leading colon: `nick!user@host` or a server name.
    public var source: String?
    /// The command, upper-cased, or a three-digit numeric.
    public var command: String
    /// The parameters; the last one may contain spaces or be empty.
    public var parameters: [String]

    /// A message to send or compare.
    public init(tags: [String: String] = [:], source: String? = nil, command: String, parameters: [String] = []) {
        self.tags = tags
        self.source = source
        self.command = command.uppercased()
        self.parameters = parameters
    }

    /// The nick in the source, when the source is a user (`nick!user@host`) or a bare name.
    public var sourceNick: String? {
        guard let source else { return nil }
        return String(source.prefix { $0 != "!" && $0 != "@" })
    }

    /// Parses one line, with or without its CR LF.
    public init(parsing line: some StringProtocol) throws(IRCParseError) {
        var rest = Substring(line)
        while let last = rest.last, last == "\n" || last == "\r" || last == "\r\n" { rest.removeLast() }
        var tags: [String: String] = [:]
        if rest.first == "@" {
            let end = rest.firstIndex(of: " ") ?? rest.endIndex
            for item in rest[rest.index(after: rest.startIndex)..<end].split(separator: ";") {
                if let equals = item.firstIndex(of: "=") {
                    tags[String(item[..<equals])] = Self.unescapeTagValue(item[item.index(after: equals)...])
                } else {
                    tags[String(item)] = ""
                }
            }
            rest = rest[end...]
        }
        rest = rest.drop { $0 == " " }
        var source: String?
        if rest.first == ":" {
            let end = rest.firstIndex(of: " ") ?? rest.endIndex
            source = String(rest[rest.index(after: rest.startIndex)..<end])
            rest = rest[end...].drop { $0 == " " }
        }
        let commandEnd = rest.firstIndex(of: " ") ?? rest.endIndex
        let command = rest[..<commandEnd]
        guard !command.isEmpty, command.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) else {
            throw IRCParseError(line: String(line), reason: command.isEmpty ? "no command" : "the command is not letters or digits")
        }
        rest = rest[commandEnd...]
        var parameters: [String] = []
        while true {
            rest = rest.drop { $0 == " " }
            if rest.isEmpty { break }
            if rest.first == ":" {
                parameters.append(String(rest.dropFirst()))
                break
            }
            let end = rest.firstIndex(of: " ") ?? rest.endIndex
            parameters.append(String(rest[..<end]))
            rest = rest[end...]
        }
        self.init(tags: tags, source: source, command: String(command), parameters: parameters)
    }

    /// The line without CR LF. The last parameter gets a colon when it needs one.
    public var line: String {
        var result = ""
        if !tags.isEmpty {
            result += "@" + tags.sorted { $0.key < $1.key }.map { key, value in
                value.isEmpty ? key : key + "=" + Self.escapeTagValue(value)
            }.joined(separator: ";") + " "
        }
        if let source { result += ":" + source + " " }
        result += command
        for (index, parameter) in parameters.enumerated() {
            let clean = String(String.UnicodeScalarView(parameter.unicodeScalars.filter { $0 != "\r" && $0 != "\n" && $0 != "\0" }))
            if index == parameters.count - 1, clean.isEmpty || clean.contains(" ") || clean.first == ":" {
                result += " :" + clean
            } else {
                result += " " + clean
            }
        }
        return result
    }

    /// The size on the wire, CR LF included.
    public var wireSize: Int { line.utf8.count + 2 }

    static func escapeTagValue(_ value: String) -> String {
        var result = ""
        for scalar in value.unicodeScalars {
            switch scalar {
            case ";": result += "\\:"
            case " ": result += "\\s"
            case "\\": result += "\\\\"
            case "\r": result += "\\r"
            case "\n": result += "\\n"
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    static func unescapeTagValue(_ value: Substring) -> String {
        var result = String.UnicodeScalarView()
        var escaping = false
        for scalar in value.unicodeScalars {
            if escaping {
                escaping = false
                switch scalar {
                case ":": result.append(";")
                case "s": result.append(" ")
                case "r": result.append("\r")
                case "n": result.append("\n")
                default: result.append(scalar)  // `\\` and any other escaped character stand for themselves
                }
            } else if scalar == "\\" {
                escaping = true  // a lone backslash at the end is dropped, as the spec says
            } else {
                result.append(scalar)
            }
        }
        return String(result)
    }
}

/// A line that is not IRC.
public struct IRCParseError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The line as received.
    public var line: String
    /// What is wrong with it.
    public var reason: String

    public var description: String { "not an IRC line (\(reason)): \(line.debugDescription)" }
}

/// A CTCP request inside a PRIVMSG or NOTICE text, such as `ACTION waves`.
public struct CTCP: Sendable, Hashable {
    /// The CTCP command, upper-cased: `ACTION`, `VERSION`, …
    public var command: String
    /// The rest of the text, empty when there is none.
    public var argument: String

    /// A CTCP request.
    public init(command: String, argument: String = "") {
        self.command = command.uppercased()
        self.argument = argument
    }

    /// The CTCP inside `text`, or nil when `text` is an ordinary message. The closing \u{01} is optional.
    public init?(text: String) {
        guard text.unicodeScalars.first == "\u{01}" else { return nil }
        var body = Substring(text).dropFirst()
        if body.unicodeScalars.last == "\u{01}" { body = body.dropLast() }
        let space = body.firstIndex(of: " ")
        let command = space.map { body[..<$0] } ?? body
        guard !command.isEmpty else { return nil }
        self.init(command: String(command), argument: space.map { String(body[body.index(after: $0)...]) } ?? "")
    }

    /// The text to put in a PRIVMSG.
    public var text: String { argument.isEmpty ? "\u{01}\(command)\u{01}" : "\u{01}\(command) \(argument)\u{01}" }
}
