import Foundation
import SwitchboardAgent

/// Points for people and things: `ana++`, `rust--`, `!karma ana`, `!karma` for the top ten.
public struct KarmaPlugin: Plugin {
    /// The plugin.
    public init() {}

    public var name: String { "karma" }

    public var patterns: [Pattern] {
        [
            Pattern(#"(?:^|\s)@?([\p{L}\p{N}._-]*[\p{L}\p{N}_])(\+\+|--)(?=\s|$|[.,!?])"#) { match, context in
                guard let thing = match.captures[0]?.lowercased(), let operation = match.captures[1] else { return }
                let sender = match.message.sender
                if thing == sender?.username.lowercased() || thing == sender?.displayName.lowercased() {
                    try await context.reply("No karma for yourself, \(sender?.displayName ?? "friend").")
                    return
                }
                let score = try await context.storage.increment("karma:\(thing)", by: operation == "++" ? 1 : -1)
                try await context.reply("\(thing) has \(score) point\(abs(score) == 1 ? "" : "s").")
            }
        ]
    }

    public var commands: [Command] {
        [
            Command("karma", help: "Shows NAME's points, or the top ten.", arguments: [.word("name", help: "a person or a thing", optional: true)]) { call, context in
                if let name = call.string("name")?.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "@")) {
                    let score = try await context.storage.get("karma:\(name)", as: Int.self) ?? 0
                    try await context.reply("\(name) has \(score) point\(abs(score) == 1 ? "" : "s").")
                    return
                }
                var scores: [(String, Int)] = []
                for key in try await context.storage.keys(prefix: "karma:") {
                    scores.append((String(key.dropFirst("karma:".count)), try await context.storage.get(key, as: Int.self) ?? 0))
                }
                guard !scores.isEmpty else {
                    try await context.reply("No karma yet: say name++.")
                    return
                }
                let top = scores.sorted { ($0.1, $1.0) > ($1.1, $0.0) }.prefix(10)
                try await context.reply("Top karma:\n" + top.enumerated().map { "\($0.offset + 1). \($0.element.0): \($0.element.1)" }.joined(separator: "\n"))
            }
        ]
    }

    /// `karma` in an agent's configuration.
    public static let factory = PluginFactory("karma") { KarmaPlugin() }
}
