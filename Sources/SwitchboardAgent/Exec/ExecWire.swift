#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SwitchboardClient
import SwitchboardProtocol

/// The exec plugin protocol: JSON lines between the agent and a program written in any language.
///
/// The agent writes one JSON object per line on the program's standard input (a `hello`, then
/// events and the results of actions); the program writes one JSON object per line on its standard
/// output (its own `hello`, then actions). Anything the program writes on standard error is logged.
/// `exec-plugin.schema.json`, next to this file, is the JSON Schema of both directions.
///
/// ```text
/// agent → program  {"type":"hello","version":1,"plugin":"py","bot":{"id":"u1","username":"pybot",…},"config":{}}
/// program → agent  {"type":"hello","version":1,"events":["message"]}
/// agent → program  {"type":"message","roomId":"r1","message":{…},"text":"ping","mentioned":false,"direct":false}
/// program → agent  {"type":"send","id":"1","roomId":"r1","content":"pong","replyTo":"m7"}
/// agent → program  {"type":"result","id":"1","ok":true,"message":{…}}
/// ```
public enum ExecProtocol {
    /// The version this agent speaks. A program that answers the `hello` with another version is
    /// stopped with an error that names both.
    public static let version = 1

    /// The event types a program may ask for in its `hello` (all of them when it names none).
    public static let eventTypes: Set<String> = [
        "message", "typing", "presence", "reaction", "member", "join", "leave", "room",
    ]
}

/// A line from the agent to the program: a JSON object with a `type`.
public struct ExecLine: Sendable, Hashable {
    /// `hello`, `result`, or an event type (``ExecProtocol/eventTypes``).
    public var type: String
    /// The other members of the object.
    public var fields: [String: JSONValue]

    /// A line of `type` with `fields`.
    public init(type: String, fields: [String: JSONValue] = [:]) {
        self.type = type
        self.fields = fields
    }

    /// The line as compact JSON, without the final new line.
    public func encoded() throws -> [UInt8] {
        var object = fields
        object["type"] = .string(type)
        return try Wire.encode(JSONValue.object(object))
    }

    /// The agent's first line: the protocol version, the plugin's name, the bot it runs for and the
    /// `config` object of the plugin's configuration.
    public static func hello(plugin: String, bot: User?, config: JSONValue?) -> ExecLine {
        var fields: [String: JSONValue] = ["version": .integer(Int64(ExecProtocol.version)), "plugin": .string(plugin)]
        if let bot { fields["bot"] = JSONValue(encoding: bot) }
        if let config { fields["config"] = config }
        return ExecLine(type: "hello", fields: fields)
    }

    /// A message in a followed room. `text` is the content without a leading address of the bot
    /// (`@bot`, `bot:`); `mentioned` says whether it named the bot; `direct` whether the room is a
    /// direct room of the bot.
    public static func message(_ message: Message, sender: User?, text: String, mentioned: Bool, direct: Bool) -> ExecLine {
        var fields: [String: JSONValue] = [
            "roomId": .string(message.roomId), "message": JSONValue(encoding: message), "text": .string(text),
            "mentioned": .bool(mentioned), "direct": .bool(direct),
        ]
        if let sender { fields["sender"] = JSONValue(encoding: sender) }
        return ExecLine(type: "message", fields: fields)
    }

    /// Someone started or stopped typing.
    public static func typing(_ typing: TypingEvent) -> ExecLine {
        ExecLine(type: "typing", fields: [
            "roomId": .string(typing.roomId), "userId": .string(typing.userId), "isTyping": .bool(typing.isTyping),
        ])
    }

    /// Someone came online or went offline.
    public static func presence(_ presence: PresenceEvent) -> ExecLine {
        ExecLine(type: "presence", fields: ["userId": .string(presence.userId), "status": .string(presence.status.rawValue)])
    }

    /// A reaction was added or removed; `reactions` holds the new counts.
    public static func reaction(_ reaction: ReactionEvent) -> ExecLine {
        ExecLine(type: "reaction", fields: [
            "roomId": .string(reaction.roomId), "userId": .string(reaction.userId),
            "messageId": .string(reaction.messageId), "reaction": .string(reaction.reaction),
            "action": .string(reaction.action.rawValue),
            "reactions": .object(reaction.reactions.mapValues { .integer(Int64($0)) }),
        ])
    }

    /// A member was added to or removed from a room (`change`: `added` or `removed`).
    public static func member(roomId: String, user: User, added: Bool, by: String?) -> ExecLine {
        var fields: [String: JSONValue] = [
            "roomId": .string(roomId), "user": JSONValue(encoding: user), "change": .string(added ? "added" : "removed"),
        ]
        if let by { fields["by"] = .string(by) }
        return ExecLine(type: "member", fields: fields)
    }

    /// A user opened (`join`) or left (`leave`) a room.
    public static func visit(roomId: String, user: User, joined: Bool) -> ExecLine {
        ExecLine(type: joined ? "join" : "leave", fields: ["roomId": .string(roomId), "user": JSONValue(encoding: user)])
    }

    /// The bot follows a room (at start, and when one appears).
    public static func room(_ room: Room) -> ExecLine {
        ExecLine(type: "room", fields: ["roomId": .string(room.id), "room": JSONValue(encoding: room)])
    }

    /// The answer to an action that carried an `id`: `ok` and what the action returned, or the error.
    public static func result(id: String, _ outcome: ExecOutcome) -> ExecLine {
        var fields: [String: JSONValue] = ["id": .string(id)]
        switch outcome {
        case .success(let values):
            fields["ok"] = .bool(true)
            fields.merge(values) { _, new in new }
        case .failure(let code, let message):
            fields["ok"] = .bool(false)
            fields["error"] = ["code": .string(code), "message": .string(message)]
        }
        return ExecLine(type: "result", fields: fields)
    }
}

/// What an action came to: the members of a successful `result`, or an error code and message.
public enum ExecOutcome: Sendable, Hashable {
    /// Done; the members to add to the result (`message` for `send`, `reactions` for `react`).
    case success([String: JSONValue])
    /// Not done: a protocol error code (`invalid`, `forbidden` …) and a message that names the cause.
    case failure(code: String, message: String)
}

/// The program's answer to the agent's `hello`.
public struct ExecHello: Sendable, Hashable {
    /// The protocol version the program speaks.
    public var version: Int
    /// The event types it wants; `nil` for all of them.
    public var events: Set<String>?

    /// A hello.
    public init(version: Int, events: Set<String>? = nil) {
        self.version = version
        self.events = events
    }

    /// Whether the program asked for events of `type`.
    public func wants(_ type: String) -> Bool {
        events?.contains(type) ?? true
    }
}

/// A line from the program: its `hello`, or an action.
public enum ExecRequest: Sendable, Hashable {
    /// The handshake answer.
    case hello(ExecHello)
    /// Send `content` to a room, as a reply to `replyTo` when given.
    case send(id: String?, roomId: String, content: String, replyTo: String?, meta: JSONValue?)
    /// Add or remove a reaction.
    case react(id: String?, roomId: String, messageId: String, reaction: String, action: ReactionAction)
    /// Show or stop showing that the bot is typing.
    case typing(id: String?, roomId: String, isTyping: Bool)
    /// A line for the agent's log.
    case log(level: String, message: String)

    /// The correlation id, for actions that carry one.
    public var id: String? {
        switch self {
        case .send(let id, _, _, _, _), .react(let id, _, _, _, _), .typing(let id, _, _): id
        case .hello, .log: nil
        }
    }

    /// Reads one line from the program.
    ///
    /// - Throws: ``ExecLineError`` naming the line's problem: not JSON, not an object, an unknown
    ///   `type`, a missing or mistyped member. It carries the line's `id` when it could be read, so
    ///   that the agent can answer it.
    public static func parse(_ line: some Collection<UInt8>) throws(ExecLineError) -> ExecRequest {
        let value: JSONValue
        do {
            value = try Wire.decode(JSONValue.self, from: line)
        } catch {
            throw ExecLineError(id: nil, message: "not JSON: \(error)")
        }
        guard let object = value.objectValue else {
            throw ExecLineError(id: nil, message: "a line must be a JSON object, not \(value.typeName)")
        }
        var reader = FieldReader(object: object)
        let id = object["id"]?.stringValue
        reader.id = id
        switch try reader.string("type") {
        case "hello":
            guard let version = object["version"]?.integerValue else {
                throw ExecLineError(id: id, message: "`hello` needs `version` (a number); this agent speaks \(ExecProtocol.version)")
            }
            var events: Set<String>?
            if let names = object["events"] {
                guard case .array(let items) = names, items.allSatisfy({ $0.stringValue != nil }) else {
                    throw ExecLineError(id: id, message: "`events` must be an array of strings")
                }
                let wanted = Set(items.compactMap(\.stringValue))
                let unknown = wanted.subtracting(ExecProtocol.eventTypes)
                guard unknown.isEmpty else {
                    throw ExecLineError(
                        id: id,
                        message: "unknown event types \(unknown.sorted()); known: \(ExecProtocol.eventTypes.sorted())"
                    )
                }
                events = wanted
            }
            return .hello(ExecHello(version: Int(version), events: events))
        case "send":
            return .send(
                id: id, roomId: try reader.string("roomId"), content: try reader.string("content"),
                replyTo: try reader.optionalString("replyTo"), meta: object["meta"]
            )
        case "react":
            let actionName = try reader.optionalString("action") ?? "add"
            let action = ReactionAction(rawValue: actionName)
            guard action == .add || action == .remove else {
                throw ExecLineError(id: id, message: "`action` must be `add` or `remove`, not `\(actionName)`")
            }
            return .react(
                id: id, roomId: try reader.string("roomId"), messageId: try reader.string("messageId"),
                reaction: try reader.string("reaction"), action: action
            )
        case "typing":
            return .typing(id: id, roomId: try reader.string("roomId"), isTyping: try reader.optionalBool("isTyping") ?? true)
        case "log":
            return .log(level: try reader.optionalString("level") ?? "info", message: try reader.string("message"))
        case let other:
            throw ExecLineError(id: id, message: "unknown type `\(other)`; known: hello, send, react, typing, log")
        }
    }
}

/// A line from the program that the agent could not read.
public struct ExecLineError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The line's `id`, when it had one.
    public var id: String?
    /// What is wrong with it.
    public var message: String

    public var description: String { message }
}

/// Reads members of a JSON object with errors that name the member and the type it should have.
private struct FieldReader {
    let object: [String: JSONValue]
    var id: String?

    init(object: [String: JSONValue]) { self.object = object }

    func string(_ key: String) throws(ExecLineError) -> String {
        guard let value = try optionalString(key) else {
            throw ExecLineError(id: id, message: "`\(object["type"]?.stringValue ?? "a line")` needs `\(key)` (a string)")
        }
        return value
    }

    func optionalString(_ key: String) throws(ExecLineError) -> String? {
        guard let value = object[key], value != .null else { return nil }
        guard let string = value.stringValue else {
            throw ExecLineError(id: id, message: "`\(key)` must be a string, not \(value.typeName)")
        }
        return string
    }

    func optionalBool(_ key: String) throws(ExecLineError) -> Bool? {
        guard let value = object[key], value != .null else { return nil }
        guard let bool = value.boolValue else {
            throw ExecLineError(id: id, message: "`\(key)` must be a boolean, not \(value.typeName)")
        }
        return bool
    }
}

extension JSONValue {
    /// A wire value as JSON (`.null` if it cannot be encoded, which the protocol's types never do).
    init(encoding value: some Encodable) {
        self = (try? Wire.encode(value)).flatMap { try? Wire.decode(JSONValue.self, from: $0) } ?? .null
    }
}
