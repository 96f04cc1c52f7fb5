import Foundation
import Logging
import Yams

/// What the agent runs: the server, the bots and their plugins, storage, admins, logging.
///
/// Usually read from YAML with ``load(file:)``:
///
/// ```yaml
/// server: http://127.0.0.1:3001
/// storage: ./agent.db          # relative to this file
/// timeZone: Europe/Berlin      # for daily and weekly schedules
/// admins: [alice]
/// logLevel: info
/// bots:
///   - name: dice
///     tokenEnv: DICE_TOKEN     # or token: …, or tokenFile: ./dice.token
///     rooms: all               # or a list of room ids or names, or {public: [lobby]}
///     plugins: [dice, echo]
///   - name: greeter
///     tokenFile: ./greeter.token
///     plugins:
///       - name: welcome
///         config: {text: "Welcome, {name}!"}
/// ```
public struct AgentConfiguration: Sendable {
    /// The server's base URL.
    public var server: String = "http://127.0.0.1:3001"
    /// The agent's SQLite file (plugin storage, positions, schedules); `:memory:` keeps nothing. Each
    /// bot's unsent messages wait next to it, in `STORAGE-BOT.outbox`.
    public var storage: String = "./agent.db"
    /// Usernames (or ids) of the people who may use every command and the admin-only ones.
    public var admins: [String] = []
    /// How much the agent logs.
    public var logLevel: Logger.Level = .info
    /// The time zone of daily and weekly schedules, as an IANA name.
    public var timeZone: String = "UTC"
    /// The bots.
    public var bots: [BotConfiguration] = []

    /// A configuration with every field at its default and no bots.
    public init(server: String = "http://127.0.0.1:3001", bots: [BotConfiguration] = []) {
        self.server = server
        self.bots = bots
    }

    /// Reads a YAML configuration file. Paths in it (storage, token files) are relative to the file.
    ///
    /// - Throws: ``ConfigurationErrors`` with every problem found, each naming where it is.
    public static func load(file: String) throws(ConfigurationErrors) -> AgentConfiguration {
        let text: String
        do {
            text = try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            throw ConfigurationErrors([ConfigurationError(code: .invalid, "cannot read \(file): \(error.localizedDescription)", cause: error)])
        }
        let folder = URL(fileURLWithPath: file).deletingLastPathComponent().path
        return try parse(yaml: text, relativeTo: folder)
    }

    /// Reads a YAML configuration. Relative paths are taken from `folder`.
    public static func parse(yaml: String, relativeTo folder: String = ".") throws(ConfigurationErrors) -> AgentConfiguration {
        var reader = ConfigurationReader(folder: folder)
        let node: Node?
        do {
            node = try Yams.compose(yaml: yaml)
        } catch {
            throw ConfigurationErrors([ConfigurationError(code: .invalid, "not valid YAML: \(error)", cause: error)])
        }
        guard let node, let root = node.mapping else {
            throw ConfigurationErrors([ConfigurationError(code: .invalid, "the configuration must be a mapping with `server` and `bots`")])
        }
        let configuration = reader.agent(root)
        if !reader.errors.isEmpty { throw ConfigurationErrors(reader.errors) }
        return configuration
    }
}

/// One bot: a user of the server, the rooms it follows and its plugins.
public struct BotConfiguration: Sendable {
    /// The bot's name: its username on the server, and its namespace in storage.
    public var name: String
    /// Where its token comes from.
    public var token: TokenSource
    /// The rooms it follows.
    public var rooms: RoomSelection = .all
    /// Its plugins, in order.
    public var plugins: [PluginEntry] = []
    /// What starts a command: `!` by default; the bot's name (`dice: roll`) always works too.
    public var prefix: String = "!"
    /// Whether other bots' messages are ignored (they are by default, so bots do not talk in circles).
    public var ignoreBots: Bool = true
    /// How fast the bot may talk in one room.
    public var talkRate: TalkRate = TalkRate()
    /// Who may call which command where.
    public var access: [AccessRule] = []
    /// The YAML this came from, to tell on reload whether the bot changed.
    var source: String?

    /// What tells on reload whether the bot changed: its YAML, or (made in code) its fields.
    var fingerprint: String {
        source ?? "\(name)|\(token)|\(rooms)|\(plugins.map(\.name))|\(prefix)|\(ignoreBots)|\(talkRate)|\(access)"
    }

    /// A bot.
    public init(name: String, token: TokenSource, rooms: RoomSelection = .all, plugins: [PluginEntry] = []) {
        self.name = name
        self.token = token
        self.rooms = rooms
        self.plugins = plugins
    }
}

/// Where a bot's token comes from.
public enum TokenSource: Sendable, Hashable {
    /// Written in the configuration (`token:`); fine for tests, not for production.
    case inline(String)
    /// An environment variable (`tokenEnv:`).
    case environment(String)
    /// A file holding the token on its first line (`tokenFile:`).
    case file(String)
    /// Made by the server that runs the agent in its own process (`switchboard serve --agent`),
    /// which creates the bot user when missing and issues it a token.
    case managed

    /// The token, read now.
    ///
    /// - Throws: ``ConfigurationError`` naming the variable or file, and how to fix it.
    public func resolve() throws(ConfigurationError) -> String {
        switch self {
        case .inline(let token):
            return token
        case .environment(let name):
            guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else {
                throw ConfigurationError(code: .token, "the environment variable \(name) is not set: export it with the bot's token (switchboard tokens add)")
            }
            return value.trimmingCharacters(in: .whitespacesAndNewlines)
        case .file(let path):
            guard let text = try? String(contentsOfFile: path, encoding: .utf8),
                  let line = text.split(whereSeparator: \.isNewline).first.map({ $0.trimmingCharacters(in: .whitespaces) }), !line.isEmpty
            else {
                throw ConfigurationError(code: .token, "cannot read a token from \(path): write the bot's token on the first line of that file")
            }
            return line
        case .managed:
            throw ConfigurationError(code: .token, "this bot has no token: give token, tokenEnv or tokenFile, or run it with `switchboard serve --agent`")
        }
    }
}

/// The rooms a bot follows.
public struct RoomSelection: Sendable, Hashable {
    /// Every room the bot is a member of, and those it is added to later.
    public var all: Bool
    /// Rooms by id or name (the bot must be a member, or the room public).
    public var rooms: [String]
    /// Public rooms by name, joined at start.
    public var publicRooms: [String]

    /// Every room of the bot.
    public static let all = RoomSelection(all: true, rooms: [], publicRooms: [])

    /// Some rooms.
    public init(all: Bool = false, rooms: [String] = [], publicRooms: [String] = []) {
        self.all = all
        self.rooms = rooms
        self.publicRooms = publicRooms
    }
}

/// A plugin of a bot: by name with its configuration (from YAML), or an instance (in code).
public struct PluginEntry: Sendable {
    /// The plugin's name in its bot: its storage namespace, and what logs and errors call it.
    public var name: String
    /// The name of the ``PluginFactory`` that makes it (`plugin:` in YAML); `name` when not given.
    public var factory: String
    enum Source: Sendable {
        case configured(String?)
        case instance(any Plugin)
    }
    var source: Source

    /// A plugin called `name`, made by the factory called `factory` (`name` when nil) with its YAML
    /// configuration (`config:`). Two plugins of one factory in a bot need two names:
    /// `.named("pybot", factory: "exec", configuration: "command: [python3, bot.py]")`.
    public static func named(_ name: String, factory: String? = nil, configuration yaml: String? = nil) -> PluginEntry {
        PluginEntry(name: name, factory: factory ?? name, source: .configured(yaml))
    }

    /// A plugin made in code; named by `name` or its own ``Plugin/name``.
    public static func instance(_ plugin: any Plugin, name: String? = nil) -> PluginEntry {
        let name = name ?? plugin.name
        return PluginEntry(name: name, factory: name, source: .instance(plugin))
    }
}

/// A plugin's configuration, before it is decoded to the plugin's own type.
public struct ConfigurationSource: Sendable {
    /// The configuration as YAML text (Yams' nodes are not `Sendable`).
    let yaml: String?
    let path: String

    /// Decodes the configuration (an empty mapping when there is none) to `Value`.
    ///
    /// - Throws: ``ConfigurationError`` naming the field that is missing or wrong.
    public func decode<Value: Decodable>(_ type: Value.Type) throws(ConfigurationError) -> Value {
        do {
            return try YAMLDecoder().decode(Value.self, from: yaml ?? "{}")
        } catch let error as DecodingError {
            throw ConfigurationError(code: .invalid, Self.describe(error, in: path), cause: error)
        } catch {
            throw ConfigurationError(code: .invalid, "\(path): \(error)", cause: error)
        }
    }

    static func describe(_ error: DecodingError, in path: String) -> String {
        func field(_ codingPath: [any CodingKey]) -> String {
            let names = codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return path + names
        }
        switch error {
        case .keyNotFound(let key, let context):
            return "\(field(context.codingPath + [key])): missing; add it"
        case .typeMismatch(let type, let context):
            return "\(field(context.codingPath)): expected \(type)" + (context.debugDescription.isEmpty ? "" : " (\(context.debugDescription))")
        case .valueNotFound(let type, let context):
            return "\(field(context.codingPath)): expected a \(type), found nothing"
        case .dataCorrupted(let context):
            return "\(field(context.codingPath)): \(context.debugDescription)"
        @unknown default:
            return "\(path): \(error)"
        }
    }
}

/// A problem with the configuration, a plugin or the storage, naming where it is and how to fix it.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    /// Kinds of problems.
    public enum Code: String, Sendable {
        /// A field is missing or wrong.
        case invalid
        /// A token cannot be read.
        case token
        /// No plugin of that name is known.
        case unknownPlugin
        /// The storage cannot be opened or written.
        case storage
        /// An action needs a room or a message that the context does not have.
        case noRoom
    }
    /// The kind.
    public var code: Code
    /// What is wrong, where, and the fix.
    public var message: String
    /// The error underneath, if any.
    public var cause: (any Error)?

    /// An error.
    public init(code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String { message }
}

/// Every problem found in a configuration, so that all of them can be fixed at once.
public struct ConfigurationErrors: Error, Sendable, CustomStringConvertible {
    /// The problems.
    public var errors: [ConfigurationError]

    /// A list of problems.
    public init(_ errors: [ConfigurationError]) { self.errors = errors }

    public var description: String {
        errors.map { "error: \($0.message)" }.joined(separator: "\n")
    }
}

/// Walks the YAML tree, collecting every error instead of stopping at the first.
struct ConfigurationReader {
    let folder: String
    var errors: [ConfigurationError] = []

    mutating func fail(_ path: String, _ message: String) {
        errors.append(ConfigurationError(code: .invalid, "\(path): \(message)"))
    }

    func path(_ file: String) -> String {
        file.hasPrefix("/") || file == ":memory:" ? file : URL(fileURLWithPath: folder).appendingPathComponent(file).standardizedFileURL.path
    }

    mutating func string(_ node: Node?, _ path: String) -> String? {
        guard let node else { return nil }
        guard let scalar = node.scalar else {
            fail(path, "expected text")
            return nil
        }
        return scalar.string
    }

    mutating func strings(_ node: Node?, _ path: String) -> [String]? {
        guard let node else { return nil }
        if let scalar = node.scalar { return [scalar.string] }
        guard let sequence = node.sequence else {
            fail(path, "expected a list")
            return nil
        }
        return sequence.enumerated().compactMap { string($0.element, "\(path)[\($0.offset)]") }
    }

    mutating func unknownKeys(_ mapping: Node.Mapping, allowed: Set<String>, _ path: String) {
        for key in mapping.keys {
            guard let name = key.string, !allowed.contains(name) else { continue }
            fail(path.isEmpty ? name : "\(path).\(name)", "unknown field; the fields here are \(allowed.sorted().joined(separator: ", "))")
        }
    }

    mutating func agent(_ root: Node.Mapping) -> AgentConfiguration {
        var configuration = AgentConfiguration()
        unknownKeys(root, allowed: ["server", "storage", "admins", "logLevel", "timeZone", "bots"], "")
        if let server = string(root["server"], "server") {
            if server.hasPrefix("http://") || server.hasPrefix("https://") {
                configuration.server = server
            } else {
                fail("server", "expected an http:// or https:// URL, such as http://127.0.0.1:3001")
            }
        }
        if let storage = string(root["storage"], "storage") { configuration.storage = path(storage) } else { configuration.storage = path("agent.db") }
        configuration.admins = strings(root["admins"], "admins") ?? []
        if let level = string(root["logLevel"], "logLevel") {
            if let parsed = Logger.Level(rawValue: level.lowercased()) { configuration.logLevel = parsed } else {
                fail("logLevel", "expected one of trace, debug, info, notice, warning, error, critical")
            }
        }
        if let zone = string(root["timeZone"], "timeZone") {
            if TimeZone(identifier: zone) != nil { configuration.timeZone = zone } else {
                fail("timeZone", "unknown time zone \(zone); use an IANA name such as Europe/Berlin or UTC")
            }
        }
        guard let botsNode = root["bots"] else {
            fail("bots", "missing; list the bots to run")
            return configuration
        }
        guard let bots = botsNode.sequence else {
            fail("bots", "expected a list of bots")
            return configuration
        }
        var names: Set<String> = []
        for (index, node) in bots.enumerated() {
            guard let bot = self.bot(node, "bots[\(index)]") else { continue }
            if !names.insert(bot.name.lowercased()).inserted { fail("bots[\(index)]", "a second bot named \(bot.name)") }
            configuration.bots.append(bot)
        }
        return configuration
    }

    mutating func bot(_ node: Node, _ at: String) -> BotConfiguration? {
        guard let mapping = node.mapping else {
            fail(at, "expected a mapping with name, a token and plugins")
            return nil
        }
        unknownKeys(mapping, allowed: ["name", "token", "tokenEnv", "tokenFile", "rooms", "plugins", "prefix", "ignoreBots", "talkRate", "access"], at)
        guard let name = string(mapping["name"], "\(at).name") else {
            fail("\(at).name", "missing; give the bot's username")
            return nil
        }
        let where_ = "bot \(name)"
        let sources = [("token", mapping["token"]), ("tokenEnv", mapping["tokenEnv"]), ("tokenFile", mapping["tokenFile"])].filter { $0.1 != nil }
        var token = TokenSource.managed
        if sources.count > 1 {
            fail(where_, "give one of token, tokenEnv and tokenFile, not \(sources.map(\.0).joined(separator: " and "))")
        } else if case let (key, value)? = sources.first, let text = string(value, "\(where_).\(key)") {
            switch key {
            case "token": token = .inline(text)
            case "tokenEnv": token = .environment(text)
            default: token = .file(path(text))
            }
        }
        var bot = BotConfiguration(name: name, token: token)
        bot.source = try? Yams.serialize(node: node)
        if let rooms = mapping["rooms"] {
            if rooms.scalar?.string == "all" {
                bot.rooms = .all
            } else if let list = rooms.sequence {
                bot.rooms = RoomSelection(rooms: list.enumerated().compactMap { string($0.element, "\(where_).rooms[\($0.offset)]") })
            } else if let map = rooms.mapping {
                unknownKeys(map, allowed: ["all", "rooms", "public"], "\(where_).rooms")
                bot.rooms = RoomSelection(
                    all: map["all"]?.bool ?? false, rooms: strings(map["rooms"], "\(where_).rooms.rooms") ?? [],
                    publicRooms: strings(map["public"], "\(where_).rooms.public") ?? [])
            } else {
                fail("\(where_).rooms", "expected `all`, a list of rooms, or {all: true, rooms: […], public: […]}")
            }
        }
        if let prefix = string(mapping["prefix"], "\(where_).prefix") { bot.prefix = prefix }
        if let ignore = mapping["ignoreBots"] {
            if let value = ignore.bool { bot.ignoreBots = value } else { fail("\(where_).ignoreBots", "expected true or false") }
        }
        if let rate = mapping["talkRate"] {
            do { bot.talkRate = try YAMLDecoder().decode(TalkRate.self, from: Yams.serialize(node: rate)) } catch let error as DecodingError {
                errors.append(ConfigurationError(code: .invalid, ConfigurationSource.describe(error, in: "\(where_).talkRate")))
            } catch { fail("\(where_).talkRate", "\(error)") }
        }
        if let access = mapping["access"] {
            do { bot.access = try YAMLDecoder().decode([AccessRule].self, from: Yams.serialize(node: access)) } catch let error as DecodingError {
                errors.append(ConfigurationError(code: .invalid, ConfigurationSource.describe(error, in: "\(where_).access")))
            } catch { fail("\(where_).access", "\(error)") }
        }
        guard let plugins = mapping["plugins"]?.sequence else {
            fail("\(where_).plugins", "missing; list the bot's plugins, such as [echo]")
            return bot
        }
        for (index, plugin) in plugins.enumerated() {
            let at = "\(where_).plugins[\(index)]"
            if let name = plugin.scalar?.string {
                bot.plugins.append(.named(name))
            } else if let map = plugin.mapping,
                      case let factory = string(map["plugin"], "\(at).plugin"), let name = string(map["name"], "\(at).name") ?? factory {
                // `plugin:` names the factory, `name:` the instance (the factory's name when absent).
                unknownKeys(map, allowed: ["plugin", "name", "config"], at)
                bot.plugins.append(.named(name, factory: factory, configuration: try? map["config"].map { try Yams.serialize(node: $0) }))
            } else {
                fail(at, "expected a plugin's name, or {plugin: …, name: …, config: {…}} with plugin or name")
            }
        }
        return bot
    }
}
