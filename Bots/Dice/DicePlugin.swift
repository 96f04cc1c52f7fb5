import SwitchboardAgent

/// Rolls dice: `!roll 3d6+2`, `!roll d20`, `!roll 2d6 + 1d4 - 1`.
public struct DicePlugin: Plugin {
    /// What a configuration may change.
    public struct Configuration: Decodable, Sendable {
        /// Most dice in one roll (100 by default).
        public var maxDice: Int?
    }

    let maxDice: Int

    /// Dice with at most `maxDice` dice a roll.
    public init(maxDice: Int = 100) {
        self.maxDice = maxDice
    }

    public var name: String { "dice" }

    public var commands: [Command] {
        [
            Command("roll", help: "Rolls dice, such as 2d6, d20 or 3d6+2.", arguments: [.text("dice", help: "NdS terms and numbers joined by + or -", optional: true)], aliases: ["r"]) { call, context in
                let roll = try Dice.roll(call.string("dice") ?? "1d6", maxDice: maxDice)
                try await context.reply("🎲 \(roll.expression): \(roll.detail) = \(roll.total)")
            }
        ]
    }

    /// `dice` in an agent's configuration, with `maxDice` (1 to 1000).
    public static let factory = PluginFactory("dice", configuration: Configuration.self) { configuration in
        let maxDice = configuration.maxDice ?? 100
        guard (1...1000).contains(maxDice) else { throw ConfigurationError(code: .invalid, "dice: maxDice must be 1 to 1000") }
        return DicePlugin(maxDice: maxDice)
    }
}

/// The dice notation, apart from chat, so that it is tested on its own.
public enum Dice {
    /// A roll: what was asked, each die, and the sum.
    public struct Roll: Sendable {
        public var expression: String
        public var detail: String
        public var total: Int
    }

    /// Rolls `expression` (`3d6+2`); `random` picks a die's face (for tests).
    public static func roll(_ expression: String, maxDice: Int = 100, random: (ClosedRange<Int>) -> Int = { Int.random(in: $0) }) throws(CommandError) -> Roll {
        let text = expression.lowercased().filter { !$0.isWhitespace }
        guard !text.isEmpty, text.count <= 100 else { throw CommandError("give dice such as 2d6 or 3d6+2", showsUsage: true) }
        var total = 0
        var parts: [String] = []
        var dice = 0
        var sign = 1
        var term = ""
        func finish() throws(CommandError) {
            guard !term.isEmpty else { throw CommandError("\"\(expression)\" is not dice: write terms such as 2d6, d20 or 3, joined by + or -") }
            if let d = term.firstIndex(of: "d") {
                let count = term[..<d].isEmpty ? 1 : Int(term[..<d])
                let sides = Int(term[term.index(after: d)...])
                guard let count, let sides else { throw CommandError("\"\(term)\" is not dice: write NdS, such as 3d6") }
                guard count >= 1 else { throw CommandError("roll at least one die") }
                guard (2...1000).contains(sides) else { throw CommandError("a die has 2 to 1000 sides, not \(sides)") }
                // Compared before adding: a count near Int.max would overflow the sum and trap.
                guard count <= maxDice - dice else { throw CommandError("at most \(maxDice) dice at once") }
                dice += count
                let faces = (0..<count).map { _ in random(1...sides) }
                total += sign * faces.reduce(0, +)
                parts.append((sign < 0 ? "-" : "") + "[" + faces.map(String.init).joined(separator: ", ") + "]")
            } else {
                guard let number = Int(term), number <= 1_000_000 else { throw CommandError("\"\(term)\" is not a number up to 1000000") }
                total += sign * number
                parts.append((sign < 0 ? "-" : "") + String(number))
            }
            term = ""
        }
        for character in text {
            if character == "+" || character == "-" {
                if !(term.isEmpty && parts.isEmpty && character == "-") { try finish() }
                sign = character == "-" ? -1 : 1
            } else if character.isNumber || character == "d" {
                term.append(character)
            } else {
                throw CommandError("unexpected \"\(character)\" in \"\(expression)\": write dice such as 3d6+2")
            }
        }
        try finish()
        guard dice > 0 else { throw CommandError("roll at least one die, such as 1d6") }
        return Roll(expression: text, detail: parts.joined(separator: " + ").replacingOccurrences(of: "+ -", with: "- "), total: total)
    }
}
