// The life of one IRC connection as a pure state machine: registration (CAP, SASL, nick),
// keep-alive, channels and members. It reads messages and times and returns what to do.

/// A channel to be in, with its key when it has one.
public struct IRCChannel: Sendable, Hashable, Codable {
    /// The channel name, with its `#`.
    public var name: String
    /// The channel key (`+k`), if the channel needs one.
    public var key: String?

    /// A channel.
    public init(_ name: String, key: String? = nil) {
        self.name = name
        self.key = key
    }
}

/// Who the session is and how it registers.
public struct IRCSessionConfiguration: Sendable, Hashable {
    /// The nick wanted. Default `switchboard`.
    public var nick: String
    /// Nicks to try, in order, when `nick` is taken; then `nick` with a number. Default none.
    public var alternateNicks: [String]
    /// The user name (ident). Default `switchboard`.
    public var username: String
    /// The real name (GECOS). Default `Switchboard bridge`.
    public var realName: String
    /// The server password (`PASS`). Default none.
    public var serverPassword: String?
    /// SASL PLAIN account and password, used when the server offers `sasl`. Default none.
    public var sasl: SASLCredentials?
    /// A password to `IDENTIFY` to NickServ after registering. Default none.
    public var nickServPassword: String?
    /// The channels to join after registering, and again after every reconnect.
    public var channels: [IRCChannel]
    /// IRCv3 capabilities to request when offered. `sasl` is added when credentials are set.
    public var capabilities: [String]
    /// Quiet time after which the session sends a PING of its own. Default 60 s.
    public var pingInterval: Duration
    /// How long a PING (ours) or registration may go unanswered before the connection is given up. Default 30 s.
    public var pingTimeout: Duration
    /// How often to try to get `nick` back while on another one. Default 30 s.
    public var nickRecoveryInterval: Duration
    /// The wait before joining again a channel that refused us (banned, invite only, …); it
    /// doubles with each refusal, up to `maxRejoinDelay`. Default 30 s.
    public var rejoinDelay: Duration
    /// The longest wait between tries to join a channel that refuses us. Default 10 minutes.
    public var maxRejoinDelay: Duration

    /// A configuration; every field has a default.
    public init(
        nick: String = "switchboard",
        alternateNicks: [String] = [],
        username: String = "switchboard",
        realName: String = "Switchboard bridge",
        serverPassword: String? = nil,
        sasl: SASLCredentials? = nil,
        nickServPassword: String? = nil,
        channels: [IRCChannel] = [],
        capabilities: [String] = ["message-tags", "server-time", "echo-message", "multi-prefix", "batch"],
        pingInterval: Duration = .seconds(60),
        pingTimeout: Duration = .seconds(30),
        nickRecoveryInterval: Duration = .seconds(30),
        rejoinDelay: Duration = .seconds(30),
        maxRejoinDelay: Duration = .seconds(600)
    ) {
        self.nick = nick
        self.alternateNicks = alternateNicks
        self.username = username
        self.realName = realName
        self.serverPassword = serverPassword
        self.sasl = sasl
        self.nickServPassword = nickServPassword
        self.channels = channels
        self.capabilities = capabilities
        self.pingInterval = pingInterval
        self.pingTimeout = pingTimeout
        self.nickRecoveryInterval = nickRecoveryInterval
        self.rejoinDelay = rejoinDelay
        self.maxRejoinDelay = max(rejoinDelay, maxRejoinDelay)
    }
}

/// An account and password for SASL PLAIN.
public struct SASLCredentials: Sendable, Hashable, Codable {
    /// The account name (authentication identity).
    public var account: String
    /// The password.
    public var password: String

    /// Credentials.
    public init(account: String, password: String) {
        self.account = account
        self.password = password
    }

    /// The `AUTHENTICATE` payload lines: base64 of `account\0account\0password` in 400-byte chunks,
    /// with a `+` after a last chunk of exactly 400 bytes, as the SASL extension asks.
    var authenticateLines: [String] {
        let encoded = Base64.encode(Array("\(account)\0\(account)\0\(password)".utf8))
        var lines: [String] = []
        var rest = Substring(encoded)
        while rest.count >= 400 {
            lines.append(String(rest.prefix(400)))
            rest = rest.dropFirst(400)
        }
        lines.append(rest.isEmpty ? "+" : String(rest))
        return lines
    }
}

/// Something that happened on IRC that a bridge may relay.
public enum IRCEvent: Sendable, Hashable {
    /// A PRIVMSG or NOTICE to a channel, or to us when `channel` is nil.
    case message(IRCChatMessage)
    /// Someone joined a channel.
    case join(channel: String, nick: String)
    /// Someone left a channel.
    case part(channel: String, nick: String, reason: String)
    /// Someone was kicked from a channel.
    case kick(channel: String, nick: String, by: String, reason: String)
    /// Someone quit IRC; `channels` are the ones of ours they were in.
    case quit(nick: String, reason: String, channels: [String])
    /// Someone changed nick; `channels` are the ones of ours they are in.
    case nickChange(from: String, to: String, channels: [String])
    /// A channel's topic, when joining or when changed (`nick` nil when joining).
    case topic(channel: String, nick: String?, topic: String)
    /// A line for `channel` was refused by the server (not in the channel, moderated, banned, …).
    case refused(channel: String, reason: String)
}

/// A PRIVMSG or NOTICE.
public struct IRCChatMessage: Sendable, Hashable {
    /// The channel, or nil for a private message to us.
    public var channel: String?
    /// The sender's nick.
    public var nick: String
    /// The text, CTCP framing removed for an ACTION; formatting codes still in.
    public var text: String
    /// A CTCP ACTION (`/me`).
    public var isAction: Bool
    /// A NOTICE rather than a PRIVMSG.
    public var isNotice: Bool
    /// Our own message echoed back by the server (`echo-message`).
    public var isEcho: Bool
    /// The server's time of the message (`server-time`), as sent.
    public var time: String?
}

/// The registration and connection state machine of one IRC connection.
///
/// Feed it the start of a connection, every message received and a periodic tick; carry out the
/// actions it returns in order. It never does I/O and never reads a clock.
///
/// ```swift
/// var session = IRCSession(IRCSessionConfiguration(nick: "relay", channels: [IRCChannel("#chat")]))
/// for action in session.start(at: .zero) { … }            // CAP LS 302, NICK, USER
/// for action in session.receive(message, at: now) { … }   // PONG, JOIN, events
/// for action in session.tick(at: now) { … }               // PING, nick recovery, timeouts
/// ```
public struct IRCSession: Sendable {
    /// What to do.
    public enum Action: Sendable, Hashable {
        /// Send this line now (control lines; not paced by flood control).
        case send(IRCMessage)
        /// Send this answer to someone (CTCP VERSION, PING) when flood control lets it: anyone can
        /// ask, so answers are paced, and dropped when many wait.
        case reply(IRCMessage)
        /// Registration is done; the server knows us as `nick`.
        case registered(nick: String)
        /// We are in this channel now.
        case joined(String)
        /// We are out of this channel (parted, kicked).
        case left(String)
        /// The server refused to let us join this channel: its lines cannot be sent until we are
        /// in; another JOIN follows after a wait.
        case cannotJoin(String)
        /// Something to relay.
        case event(IRCEvent)
        /// Worth logging: refused SASL, a channel that cannot be joined, a standard FAIL reply.
        case warning(String)
        /// Close the connection for this reason, then reconnect.
        case close(reason: String)
    }

    /// Where registration stands.
    public enum Phase: Sendable, Hashable {
        case idle, registering, registered
    }

    /// The configuration.
    public let configuration: IRCSessionConfiguration
    /// Where registration stands.
    public private(set) var phase: Phase = .idle
    /// Our nick now (the one asked for until the server confirms one).
    public private(set) var nick: String
    /// The IRCv3 capabilities in force.
    public private(set) var capabilities: Set<String> = []
    /// The last round trip of one of our PINGs.
    public private(set) var lag: Duration?
    /// Our `user@host` as others see it, learnt from our own JOIN.
    public private(set) var userAndHost: String?
    /// What the server announced in `005` (RPL_ISUPPORT), such as `NICKLEN`.
    public private(set) var serverSupport: [String: String] = [:]
    /// The channels we are in, by folded name, with the nicks in each (folded).
    private var members: [String: Set<String>] = [:]
    private var channelNames: [String: String] = [:]

    private var offeredCapabilities: [String: String] = [:]
    private var negotiating = false
    private var authenticating = false
    private var nickAttempts = 0
    private var lastNickWasErroneous = false
    private var startedAt: Duration = .zero
    private var lastReceived: Duration = .zero
    private var pingSentAt: Duration?
    private var lastRecoveryAttempt: Duration = .zero
    /// Channels that refused us, by folded name: refusals in a row, and when to try again.
    private var refusedJoins: [String: (channel: String, refusals: Int, retryAt: Duration)] = [:]

    /// A session before its connection starts.
    public init(_ configuration: IRCSessionConfiguration) {
        self.configuration = configuration
        self.nick = configuration.nick
    }

    /// The channels we are in, as the server spells them.
    public var joinedChannels: [String] { channelNames.values.sorted() }

    /// Whether we are in `channel` now.
    public func isJoined(_ channel: String) -> Bool { members[IRCCase.fold(channel)] != nil }

    /// Whether the server refused to let us join `channel`, and we are not in it yet.
    public func cannotJoin(_ channel: String) -> Bool { refusedJoins[IRCCase.fold(channel)] != nil }

    /// The connection is up: register. Everything from a previous connection is forgotten.
    public mutating func start(at now: Duration) -> [Action] {
        self = IRCSession(configuration)
        phase = .registering
        startedAt = now
        lastReceived = now
        lastRecoveryAttempt = now
        negotiating = true
        var actions: [Action] = [.send(IRCMessage(command: "CAP", parameters: ["LS", "302"]))]
        if let password = configuration.serverPassword {
            actions.append(.send(IRCMessage(command: "PASS", parameters: [password])))
        }
        actions.append(.send(IRCMessage(command: "NICK", parameters: [nick])))
        actions.append(.send(IRCMessage(command: "USER", parameters: [configuration.username, "0", "*", configuration.realName])))
        return actions
    }

    /// A message from the server.
    public mutating func receive(_ message: IRCMessage, at now: Duration) -> [Action] {
        lastReceived = now
        let parameters = message.parameters
        func parameter(_ index: Int) -> String { index < parameters.count ? parameters[index] : "" }
        let fromSelf = message.sourceNick.map { IRCCase.equal($0, nick) } ?? false

        switch message.command {
        case "PING":
            return [.send(IRCMessage(command: "PONG", parameters: parameters))]
        case "PONG":
            // Only our lag PING's answer; the client's delivery markers carry other tokens.
            if let sent = pingSentAt, parameters.last == "switchboard" {
                lag = now - sent
                pingSentAt = nil
            }
            return []
        case "CAP":
            return receiveCapability(subcommand: parameter(1).uppercased(), parameters: Array(parameters.dropFirst(2)))
        case "AUTHENTICATE":
            guard authenticating, parameter(0) == "+", let sasl = configuration.sasl else { return [] }
            return sasl.authenticateLines.map { .send(IRCMessage(command: "AUTHENTICATE", parameters: [$0])) }
        case "903":
            authenticating = false
            return endNegotiation()
        case "902", "904", "905", "906", "908":
            let wasAuthenticating = authenticating
            authenticating = false
            guard wasAuthenticating else { return [] }
            return [.warning("SASL login refused (\(message.command) \(parameters.last ?? "")): check the account and password")]
                + endNegotiation()
        case "001":
            return registered(as: parameter(0), at: now)
        case "005":
            for token in parameters.dropFirst().dropLast() {
                guard let (name, value) = Self.nameAndValue(token) else { continue }
                serverSupport[name] = value
            }
            return []
        case "432", "433", "436", "437":
            guard phase == .registering else { return [] }
            lastNickWasErroneous = message.command == "432"
            nickAttempts += 1
            nick = nextNick()
            return [.send(IRCMessage(command: "NICK", parameters: [nick]))]
        case "NICK":
            let old = message.sourceNick ?? ""
            let new = parameter(0)
            var actions: [Action] = []
            if fromSelf {
                nick = new
            } else if IRCCase.equal(old, configuration.nick) && !IRCCase.equal(nick, configuration.nick) {
                actions.append(recoverNick(at: now))
            }
            let channels = rename(old, to: new)
            if !fromSelf { actions.append(.event(.nickChange(from: old, to: new, channels: channels))) }
            return actions
        case "QUIT":
            let who = message.sourceNick ?? ""
            var actions: [Action] = []
            let channels = remove(who)
            if IRCCase.equal(who, configuration.nick) && !IRCCase.equal(nick, configuration.nick) {
                actions.append(recoverNick(at: now))
            }
            actions.append(.event(.quit(nick: who, reason: parameter(0), channels: channels)))
            return actions
        case "JOIN":
            let channel = parameter(0)
            let key = IRCCase.fold(channel)
            if fromSelf {
                if let bang = message.source?.firstIndex(of: "!") {
                    userAndHost = String(message.source![message.source!.index(after: bang)...])
                }
                members[key] = [IRCCase.fold(nick)]
                channelNames[key] = channel
                refusedJoins[key] = nil
                return [.joined(channel)]
            }
            members[key]?.insert(IRCCase.fold(message.sourceNick ?? ""))
            return [.event(.join(channel: channel, nick: message.sourceNick ?? ""))]
        case "PART":
            let channel = parameter(0)
            if fromSelf {
                forget(channel)
                return [.left(channel)]
            }
            members[IRCCase.fold(channel)]?.remove(IRCCase.fold(message.sourceNick ?? ""))
            return [.event(.part(channel: channel, nick: message.sourceNick ?? "", reason: parameter(1)))]
        case "KICK":
            let channel = parameter(0)
            let target = parameter(1)
            let event = Action.event(.kick(channel: channel, nick: target, by: message.sourceNick ?? "", reason: parameter(2)))
            if IRCCase.equal(target, nick) {
                forget(channel)
                return [event, .left(channel), .send(join(channel))]
            }
            members[IRCCase.fold(channel)]?.remove(IRCCase.fold(target))
            return [event]
        case "353":
            // RPL_NAMREPLY: me, symbol, channel, names with prefixes (all of them with multi-prefix).
            let key = IRCCase.fold(parameter(2))
            for name in parameter(3).split(separator: " ") {
                let bare = name.drop { "~&@%+!".contains($0) }.prefix { $0 != "!" }
                members[key]?.insert(IRCCase.fold(String(bare)))
            }
            return []
        case "332":
            return [.event(.topic(channel: parameter(1), nick: nil, topic: parameter(2)))]
        case "TOPIC":
            return [.event(.topic(channel: parameter(0), nick: message.sourceNick, topic: parameter(1)))]
        case "PRIVMSG", "NOTICE":
            return receiveText(message, fromSelf: fromSelf)
        case "404", "442", "403", "401":
            // Cannot send to channel / not on channel / no such channel or nick.
            return [.event(.refused(channel: parameter(1), reason: parameter(2)))]
        case "471", "473", "474", "475", "477":
            // Full, invite only, banned, wrong key, registered nicks only: lines for it would wait
            // forever, and their queue would hold up the sender.
            let channel = parameter(1)
            let key = IRCCase.fold(channel)
            let refusals = (refusedJoins[key]?.refusals ?? 0) + 1
            let delay = rejoinDelay(after: refusals)
            refusedJoins[key] = (channel, refusals, now + delay)
            return [
                .warning("cannot join \(channel): \(parameter(2)) (\(message.command)); its lines are dropped, and joining is tried again in \(delay)"),
                .cannotJoin(channel),
            ]
        case "FAIL":
            return [.warning("server refused \(parameter(0)): \(parameters.last ?? "")")]
        case "ERROR":
            return [.close(reason: "the server closed the link: \(parameter(0))")]
        default:
            return []
        }
    }

    /// Time passed: keep-alive, timeouts and nick recovery.
    public mutating func tick(at now: Duration) -> [Action] {
        switch phase {
        case .idle:
            return []
        case .registering:
            if now - startedAt >= configuration.pingTimeout + configuration.pingInterval {
                return [.close(reason: "registration did not finish within \(configuration.pingTimeout + configuration.pingInterval)")]
            }
            return []
        case .registered:
            var actions: [Action] = []
            if let sent = pingSentAt {
                if now - sent >= configuration.pingTimeout {
                    return [.close(reason: "no PONG within \(configuration.pingTimeout): the server is silent")]
                }
            } else if now - lastReceived >= configuration.pingInterval {
                pingSentAt = now
                actions.append(.send(IRCMessage(command: "PING", parameters: ["switchboard"])))
            }
            for (key, refused) in refusedJoins where refused.retryAt <= now {
                // Again later too, should the server not answer this one.
                let retryAt = now + rejoinDelay(after: refused.refusals)
                refusedJoins[key]?.retryAt = retryAt
                actions.append(.send(join(refused.channel)))
            }
            if !IRCCase.equal(nick, configuration.nick), now - lastRecoveryAttempt >= configuration.nickRecoveryInterval {
                actions.append(recoverNick(at: now))
            }
            return actions
        }
    }

    /// A PING of our own now, to measure lag (when none is outstanding).
    public mutating func ping(at now: Duration) -> [Action] {
        guard phase == .registered, pingSentAt == nil else { return [] }
        pingSentAt = now
        return [.send(IRCMessage(command: "PING", parameters: ["switchboard"]))]
    }

    // MARK: - Parts of `receive`

    private mutating func receiveCapability(subcommand: String, parameters: [String]) -> [Action] {
        switch subcommand {
        case "LS":
            guard negotiating else { return [] }
            let more = parameters.count > 1 && parameters[0] == "*"
            for item in (parameters.last ?? "").split(separator: " ") {
                guard let (name, value) = Self.nameAndValue(item) else { continue }
                offeredCapabilities[name] = value
            }
            if more { return [] }
            var wanted = configuration.capabilities.filter { offeredCapabilities[$0] != nil }
            if configuration.sasl != nil {
                if offeredCapabilities["sasl"] != nil {
                    wanted.append("sasl")
                }
            }
            var actions: [Action] = []
            if configuration.sasl != nil, offeredCapabilities["sasl"] == nil {
                actions.append(.warning("the server offers no SASL: continuing without logging in"))
            }
            if wanted.isEmpty { return actions + endNegotiation() }
            return actions + [.send(IRCMessage(command: "CAP", parameters: ["REQ", wanted.joined(separator: " ")]))]
        case "ACK":
            for item in (parameters.last ?? "").split(separator: " ") {
                if item.hasPrefix("-") { capabilities.remove(String(item.dropFirst())) } else { capabilities.insert(String(item)) }
            }
            guard negotiating else { return [] }
            if capabilities.contains("sasl"), configuration.sasl != nil {
                authenticating = true
                return [.send(IRCMessage(command: "AUTHENTICATE", parameters: ["PLAIN"]))]
            }
            return endNegotiation()
        case "NAK":
            guard negotiating else { return [] }
            return [.warning("the server refused capabilities: \(parameters.last ?? "")")] + endNegotiation()
        case "DEL":
            for item in (parameters.last ?? "").split(separator: " ") { capabilities.remove(String(item)) }
            return []
        default:
            return []
        }
    }

    private mutating func endNegotiation() -> [Action] {
        guard negotiating else { return [] }
        negotiating = false
        return [.send(IRCMessage(command: "CAP", parameters: ["END"]))]
    }

    private mutating func registered(as confirmed: String, at now: Duration) -> [Action] {
        phase = .registered
        negotiating = false
        nick = confirmed.isEmpty ? nick : confirmed
        lastRecoveryAttempt = now
        var actions: [Action] = [.registered(nick: nick)]
        if let password = configuration.nickServPassword {
            let text = IRCCase.equal(nick, configuration.nick) ? "IDENTIFY \(password)" : "IDENTIFY \(configuration.nick) \(password)"
            actions.append(.send(IRCMessage(command: "PRIVMSG", parameters: ["NickServ", text])))
        }
        for channel in configuration.channels {
            actions.append(.send(IRCMessage(command: "JOIN", parameters: [channel.name] + (channel.key.map { [$0] } ?? []))))
        }
        return actions
    }

    private mutating func recoverNick(at now: Duration) -> Action {
        lastRecoveryAttempt = now
        return .send(IRCMessage(command: "NICK", parameters: [configuration.nick]))
    }

    /// The nick after `nickAttempts` refusals: the alternates in order, then the nick with 1, 2, …
    /// (shortened to fit when the server called the nick erroneous, usually for its length).
    private func nextNick() -> String {
        let candidates = [configuration.nick] + configuration.alternateNicks
        if nickAttempts < candidates.count { return candidates[nickAttempts] }
        let suffix = String(nickAttempts - candidates.count + 1)
        let limit = Int(serverSupport["NICKLEN"] ?? "") ?? (lastNickWasErroneous ? 9 : 30)
        return String(configuration.nick.prefix(max(1, limit - suffix.count))) + suffix
    }

    private mutating func receiveText(_ message: IRCMessage, fromSelf: Bool) -> [Action] {
        guard message.parameters.count >= 2 else { return [] }
        let target = message.parameters[0]
        var text = message.parameters[1]
        let isChannel = target.first.map { "#&+!".contains($0) } ?? false
        var isAction = false
        if let ctcp = CTCP(text: text) {
            guard ctcp.command == "ACTION" else {
                // Answer VERSION and PING privately; ignore the rest.
                guard message.command == "PRIVMSG", !isChannel, let sender = message.sourceNick else { return [] }
                switch ctcp.command {
                case "VERSION":
                    return [.reply(IRCMessage(command: "NOTICE", parameters: [sender, CTCP(command: "VERSION", argument: "Switchboard IRC bridge").text]))]
                case "PING":
                    return [.reply(IRCMessage(command: "NOTICE", parameters: [sender, ctcp.text]))]
                default:
                    return []
                }
            }
            isAction = true
            text = ctcp.argument
        }
        let chat = IRCChatMessage(
            channel: isChannel ? target : nil,
            nick: message.sourceNick ?? "",
            text: text,
            isAction: isAction,
            isNotice: message.command == "NOTICE",
            isEcho: fromSelf,
            time: message.tags["time"]
        )
        return [.event(.message(chat))]
    }

    /// `NAME=value` or `NAME` (value ""), as in `005` and `CAP LS`; nil without a name (a server
    /// may send a bare `=`, which must not bring the bridge down).
    private static func nameAndValue(_ token: some StringProtocol) -> (String, String)? {
        let parts = token.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        guard let name = parts.first, !name.isEmpty else { return nil }
        return (String(name), parts.count > 1 ? String(parts[1]) : "")
    }

    /// A JOIN for `channel`, with its key when it has one.
    private func join(_ channel: String) -> IRCMessage {
        let key = configuration.channels.first { IRCCase.equal($0.name, channel) }?.key
        return IRCMessage(command: "JOIN", parameters: [channel] + (key.map { [$0] } ?? []))
    }

    /// The wait before the next JOIN after `refusals` refusals in a row.
    private func rejoinDelay(after refusals: Int) -> Duration {
        min(configuration.rejoinDelay * (1 << min(refusals - 1, 20)), configuration.maxRejoinDelay)
    }

    private mutating func forget(_ channel: String) {
        let key = IRCCase.fold(channel)
        members[key] = nil
        channelNames[key] = nil
    }

    private mutating func rename(_ old: String, to new: String) -> [String] {
        let (oldKey, newKey) = (IRCCase.fold(old), IRCCase.fold(new))
        var channels: [String] = []
        for key in members.keys where members[key]?.remove(oldKey) != nil {
            members[key]?.insert(newKey)
            channels.append(channelNames[key] ?? key)
        }
        return channels.sorted()
    }

    private mutating func remove(_ who: String) -> [String] {
        let key = IRCCase.fold(who)
        var channels: [String] = []
        for channel in members.keys where members[channel]?.remove(key) != nil {
            channels.append(channelNames[channel] ?? channel)
        }
        return channels.sorted()
    }
}

/// IRC's case-insensitivity (the `rfc1459` case mapping: `[]\~` are the capitals of `{}|^`).
public enum IRCCase {
    /// `name` in lower case, as IRC compares nicks and channels.
    public static func fold(_ name: String) -> String {
        String(String.UnicodeScalarView(name.unicodeScalars.map { scalar -> Unicode.Scalar in
            switch scalar {
            case "A"..."Z": Unicode.Scalar(scalar.value + 32)!
            case "[": "{"
            case "]": "}"
            case "\\": "|"
            case "~": "^"
            default: scalar
            }
        }))
    }

    /// Whether two nicks or channel names are the same to IRC.
    public static func equal(_ a: String, _ b: String) -> Bool { fold(a) == fold(b) }
}

/// Base64 without Foundation (for SASL).
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var output: [UInt8] = []
        output.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index < bytes.count {
            let chunk = bytes[index..<min(index + 3, bytes.count)]
            let value = chunk.enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (16 - 8 * $1.offset) }
            for position in 0..<4 {
                output.append(position <= chunk.count ? alphabet[Int((value >> (18 - 6 * position)) & 63)] : UInt8(ascii: "="))
            }
            index += 3
        }
        return String(decoding: output, as: UTF8.self)
    }
}
