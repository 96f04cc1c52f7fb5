import Foundation

/// A command a plugin offers, such as `!roll 3d6+2`, with typed arguments and help text.
///
/// ```swift
/// Command("roll", help: "Rolls dice.", arguments: [.word("dice", help: "such as 2d6 or 3d6+2")]) { call, context in
///     let dice = call.string("dice")!
///     try await context.reply("🎲 \(dice)")
/// }
/// ```
///
/// The agent parses the arguments before the handler runs: a missing argument or one of the wrong
/// type is answered with the error and the command's usage, and the handler is not called.
/// `!help` and `!help roll` are generated from these declarations.
public struct Command: Sendable {
    /// The name, without prefix; matched without regard to case.
    public var name: String
    /// Other names that call the same command.
    public var aliases: [String]
    /// One line (or more) that `!help` shows; the first line is the summary.
    public var help: String
    /// The arguments, in order.
    public var arguments: [Argument]
    /// Whether only the agent's admins may call it (see ``AgentConfiguration/admins``).
    public var adminOnly: Bool
    let handler: @Sendable (CommandCall, PluginContext) async throws -> Void

    /// A command.
    public init(
        _ name: String, help: String, arguments: [Argument] = [], aliases: [String] = [], adminOnly: Bool = false,
        handler: @escaping @Sendable (CommandCall, PluginContext) async throws -> Void
    ) {
        self.name = name.lowercased()
        self.help = help
        self.arguments = arguments
        self.aliases = aliases.map { $0.lowercased() }
        self.adminOnly = adminOnly
        self.handler = handler
    }

    /// `!roll DICE [TIMES]`.
    public func usage(prefix: String) -> String {
        ([prefix + name] + arguments.map(\.usage)).joined(separator: " ")
    }

    /// Whether `word` calls this command.
    func answers(to word: String) -> Bool {
        word == name || aliases.contains(word)
    }

    /// Reads the arguments from the text after the command's name.
    func parse(_ text: String) throws(CommandError) -> [String: ArgumentValue] {
        var values: [String: ArgumentValue] = [:]
        var rest = Substring(text).drop(while: \.isWhitespace)
        for argument in arguments {
            if rest.isEmpty {
                if let fallback = argument.defaultValue { values[argument.name] = fallback; continue }
                if argument.isOptional { continue }
                throw CommandError("missing \(argument.name.uppercased())" + (argument.help.isEmpty ? "" : " (\(argument.help))"))
            }
            let raw: Substring
            if argument.kind == .text {
                raw = rest
                rest = ""
            } else {
                let end = rest.firstIndex(where: \.isWhitespace) ?? rest.endIndex
                raw = rest[..<end]
                rest = rest[end...].drop(while: \.isWhitespace)
            }
            values[argument.name] = try argument.read(String(raw))
        }
        if !rest.isEmpty {
            throw CommandError("unexpected \"\(rest.prefix(40))\"")
        }
        return values
    }
}

/// An argument of a ``Command``.
public struct Argument: Sendable, Hashable {
    /// What an argument accepts.
    public enum Kind: Sendable, Hashable {
        /// One word.
        case word
        /// A whole number.
        case integer(ClosedRange<Int>?)
        /// A number.
        case number
        /// One of a few words.
        case choice([String])
        /// The rest of the line; only last.
        case text
    }

    /// Its name, shown in upper case in usage lines.
    public var name: String
    /// What it accepts.
    public var kind: Kind
    /// What it is, for `!help COMMAND`.
    public var help: String
    /// Whether it may be left out.
    public var isOptional: Bool
    /// The value when it is left out.
    public var defaultValue: ArgumentValue?

    /// One word, such as a name.
    public static func word(_ name: String, help: String = "", optional: Bool = false, default value: String? = nil) -> Argument {
        Argument(name: name, kind: .word, help: help, isOptional: optional || value != nil, defaultValue: value.map(ArgumentValue.string))
    }

    /// A whole number, optionally within `range`.
    public static func integer(_ name: String, help: String = "", in range: ClosedRange<Int>? = nil, optional: Bool = false, default value: Int? = nil) -> Argument {
        Argument(name: name, kind: .integer(range), help: help, isOptional: optional || value != nil, defaultValue: value.map(ArgumentValue.integer))
    }

    /// A number.
    public static func number(_ name: String, help: String = "", optional: Bool = false, default value: Double? = nil) -> Argument {
        Argument(name: name, kind: .number, help: help, isOptional: optional || value != nil, defaultValue: value.map(ArgumentValue.number))
    }

    /// One of `choices` (matched without regard to case).
    public static func choice(_ name: String, _ choices: [String], help: String = "", optional: Bool = false) -> Argument {
        Argument(name: name, kind: .choice(choices), help: help, isOptional: optional, defaultValue: nil)
    }

    /// Everything after the previous arguments; only as the last argument.
    public static func text(_ name: String, help: String = "", optional: Bool = false) -> Argument {
        Argument(name: name, kind: .text, help: help, isOptional: optional, defaultValue: nil)
    }

    /// `NAME`, `[NAME]`, `NAME…`, `add|remove`.
    var usage: String {
        var word: String
        switch kind {
        case .choice(let choices): word = choices.joined(separator: "|")
        case .text: word = name.uppercased() + "…"
        default: word = name.uppercased()
        }
        if isOptional { word = "[\(word)]" }
        return word
    }

    func read(_ raw: String) throws(CommandError) -> ArgumentValue {
        switch kind {
        case .word, .text:
            return .string(raw)
        case .integer(let range):
            guard let value = Int(raw) else { throw CommandError("\(name.uppercased()) must be a whole number, not \"\(raw.prefix(20))\"") }
            if let range, !range.contains(value) {
                throw CommandError("\(name.uppercased()) must be from \(range.lowerBound) to \(range.upperBound)")
            }
            return .integer(value)
        case .number:
            guard let value = Double(raw), value.isFinite else { throw CommandError("\(name.uppercased()) must be a number, not \"\(raw.prefix(20))\"") }
            return .number(value)
        case .choice(let choices):
            guard let choice = choices.first(where: { $0.lowercased() == raw.lowercased() }) else {
                throw CommandError("\(name.uppercased()) must be one of \(choices.joined(separator: ", "))")
            }
            return .string(choice)
        }
    }
}

/// A parsed argument.
public enum ArgumentValue: Sendable, Hashable {
    case string(String)
    case integer(Int)
    case number(Double)
}

/// A command being called: which one, by whom, where, and its parsed arguments.
public struct CommandCall: Sendable {
    /// The command.
    public var command: Command
    /// The message that called it.
    public var message: IncomingMessage
    /// The text after the command's name, trimmed.
    public var argumentText: String
    /// The parsed arguments by name.
    public var values: [String: ArgumentValue]

    /// A word, choice or text argument (`nil` when left out).
    public func string(_ name: String) -> String? {
        switch values[name] {
        case .string(let value): value
        case .integer(let value): String(value)
        case .number(let value): String(value)
        case nil: nil
        }
    }

    /// An integer argument.
    public func integer(_ name: String) -> Int? {
        if case .integer(let value) = values[name] { return value }
        return nil
    }

    /// A number argument (integers too).
    public func number(_ name: String) -> Double? {
        switch values[name] {
        case .number(let value): value
        case .integer(let value): Double(value)
        default: nil
        }
    }
}

/// An error meant for the person who called a command: the agent replies with its message (and
/// the command's usage), and does not log it as a failure.
///
/// ```swift
/// guard count <= 100 else { throw CommandError("at most 100 dice") }
/// ```
public struct CommandError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, in words for the user.
    public var message: String
    /// Whether to add the command's usage line to the reply.
    public var showsUsage: Bool

    /// An error for the caller.
    public init(_ message: String, showsUsage: Bool = false) {
        self.message = message
        self.showsUsage = showsUsage
    }

    public var description: String { message }
}

/// Finds the command in a message: `!roll 2d6`, `dice: roll 2d6`, `@dice roll 2d6`, or `roll 2d6` in
/// a direct room.
struct CommandParser: Sendable {
    var prefix: String
    var botNames: [String]

    /// The command word (lowercased) and the text after it, or nil when the message addresses no command.
    /// `addressed` says whether the message was clearly meant for this bot (its name, or a direct room).
    func find(in message: IncomingMessage) -> (word: String, rest: String, addressed: Bool)? {
        var text = Substring(message.content.trimmingCharacters(in: .whitespacesAndNewlines))
        var addressed = false
        if !prefix.isEmpty, text.hasPrefix(prefix) {
            text = text.dropFirst(prefix.count)
        } else if let stripped = Self.stripAddress(text, names: botNames) {
            text = stripped
            addressed = true
            if !prefix.isEmpty, text.hasPrefix(prefix) { text = text.dropFirst(prefix.count) }
        } else if message.isDirect {
            addressed = true
        } else {
            return nil
        }
        let end = text.firstIndex(where: \.isWhitespace) ?? text.endIndex
        let word = text[..<end].lowercased()
        guard !word.isEmpty else { return nil }
        let rest = text[end...].trimmingCharacters(in: .whitespacesAndNewlines)
        return (word, rest, addressed || message.isDirect)
    }

    /// `text` without a leading `@name`, `name:` or `name,`, or nil when it does not start so.
    static func stripAddress(_ text: Substring, names: [String]) -> Substring? {
        for name in names where !name.isEmpty {
            for form in ["@" + name, name] {
                guard text.lowercased().hasPrefix(form.lowercased()) else { continue }
                var rest = text.dropFirst(form.count)
                if form.hasPrefix("@") {
                    guard rest.isEmpty || rest.first!.isWhitespace || rest.first == ":" || rest.first == "," else { continue }
                } else {
                    guard rest.first == ":" || rest.first == "," else { continue }
                }
                if rest.first == ":" || rest.first == "," { rest = rest.dropFirst() }
                return rest.drop(while: \.isWhitespace)
            }
        }
        return nil
    }

    /// Whether `text` mentions one of `names` as `@name` anywhere (a word boundary after it).
    static func mentions(_ text: String, names: [String]) -> Bool {
        let lower = text.lowercased()
        for name in names where !name.isEmpty {
            let needle = "@" + name.lowercased()
            var searchRange = lower.startIndex..<lower.endIndex
            while let found = lower.range(of: needle, range: searchRange) {
                if found.upperBound == lower.endIndex || !(lower[found.upperBound].isLetter || lower[found.upperBound].isNumber || lower[found.upperBound] == "_") {
                    return true
                }
                searchRange = found.upperBound..<lower.endIndex
            }
        }
        return stripAddress(Substring(text), names: names.filter { !$0.isEmpty }) != nil
    }
}

/// `!help` and `!help COMMAND`, from the commands' declarations.
enum Help {
    static func overview(_ commands: [(plugin: String, command: Command)], prefix: String, botName: String) -> String {
        var lines = ["Commands of \(botName) (\(prefix)help COMMAND for details):"]
        for (_, command) in commands.sorted(by: { $0.command.name < $1.command.name }) {
            let summary = command.help.split(separator: "\n").first.map(String.init) ?? ""
            lines.append("  \(command.usage(prefix: prefix)) — \(summary)")
        }
        return lines.joined(separator: "\n")
    }

    static func detail(_ command: Command, plugin: String, prefix: String) -> String {
        var lines = ["\(command.usage(prefix: prefix))", command.help]
        for argument in command.arguments where !argument.help.isEmpty || argument.isOptional {
            var line = "  \(argument.name.uppercased()): \(argument.help)"
            if let fallback = argument.defaultValue {
                switch fallback {
                case .string(let value): line += " (default \(value))"
                case .integer(let value): line += " (default \(value))"
                case .number(let value): line += " (default \(value))"
                }
            } else if argument.isOptional {
                line += " (optional)"
            }
            lines.append(line)
        }
        if !command.aliases.isEmpty { lines.append("Also: " + command.aliases.map { prefix + $0 }.joined(separator: ", ")) }
        if command.adminOnly { lines.append("Admins only.") }
        lines.append("(plugin \(plugin))")
        return lines.joined(separator: "\n")
    }
}
