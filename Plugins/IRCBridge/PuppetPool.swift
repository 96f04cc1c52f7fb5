/// Puppeting: each chat user who speaks in a bridged room gets an IRC connection of their own.
///
/// ```yaml
/// puppets: {enabled: true, limit: 20, suffix: "[m]", idleMinutes: 30}
/// ```
public struct PuppetOptions: Sendable, Hashable, Decodable {
    /// Whether chat users speak through puppets. Default false: everything goes through the relay nick.
    public var enabled = false
    /// The most puppets connected at once; past it, new speakers use the relay nick. Default 10.
    public var limit = 10
    /// Added to every puppet's nick, so that IRC users can tell them from people; shorter than
    /// `maxNickLength`. Default `[m]`.
    public var suffix = "[m]"
    /// The longest nick to ask for, suffix included (many networks allow 16 or more). Default 16.
    public var maxNickLength = 16
    /// How long a puppet stays connected after its user last spoke, then it quits (`idleMinutes`
    /// in YAML). Default 30 minutes.
    public var idleTimeout: Duration = .seconds(30 * 60)

    /// The defaults.
    public init(enabled: Bool = false, limit: Int = 10, suffix: String = "[m]", maxNickLength: Int = 16, idleTimeout: Duration = .seconds(30 * 60)) {
        self.enabled = enabled
        self.limit = max(0, limit)
        self.suffix = suffix
        self.maxNickLength = max(2, maxNickLength)
        self.idleTimeout = idleTimeout
    }

    private enum Key: String, CodingKey { case enabled, limit, suffix, maxNickLength, idleMinutes }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        let defaults = PuppetOptions()
        let idle = try c.decodeIfPresent(Int.self, forKey: .idleMinutes).map { Duration.seconds($0 * 60) }
        self.init(
            enabled: try c.decodeIfPresent(Bool.self, forKey: .enabled) ?? defaults.enabled,
            limit: try c.decodeIfPresent(Int.self, forKey: .limit) ?? defaults.limit,
            suffix: try c.decodeIfPresent(String.self, forKey: .suffix) ?? defaults.suffix,
            maxNickLength: try c.decodeIfPresent(Int.self, forKey: .maxNickLength) ?? defaults.maxNickLength,
            idleTimeout: idle ?? defaults.idleTimeout
        )
        if suffix.contains(where: { !PuppetPool.isNickCharacter($0) }) {
            throw DecodingError.dataCorruptedError(forKey: .suffix, in: c, debugDescription: "the puppet suffix \(suffix.debugDescription) has characters a nick cannot have: use letters, digits and []\\`_^{|}-")
        }
        if suffix.count >= maxNickLength {
            throw DecodingError.dataCorruptedError(forKey: .suffix, in: c, debugDescription: "the puppet suffix \(suffix.debugDescription) leaves no room for a name in nicks of at most \(maxNickLength) characters: shorten it or raise maxNickLength")
        }
    }
}

/// Which chat users have puppets, as a pure state machine: it decides, the relay connects.
///
/// ```swift
/// var pool = PuppetPool(options)
/// switch pool.speak(userId: "u1", name: "ann", at: now) {
/// case .start(let nick): …   // connect a puppet with this nick, then send through it
/// case .use(let nick): …     // send through the user's puppet
/// case .relay: …             // the pool is full: send through the relay nick
/// }
/// for userId in pool.idle(at: now) { … }  // quit these puppets
/// ```
public struct PuppetPool: Sendable {
    /// How a chat user's message goes to IRC.
    public enum Route: Sendable, Hashable {
        /// Through a new puppet with this nick: connect it first.
        case start(nick: String)
        /// Through the user's puppet, which has this nick.
        case use(nick: String)
        /// Through the relay nick (puppets off, or as many connected as allowed).
        case relay
    }

    private struct Puppet: Sendable {
        var nick: String
        var lastSpoke: Duration
    }

    /// The options.
    public let options: PuppetOptions
    private var puppets: [String: Puppet] = [:]  // by chat user id

    /// An empty pool.
    public init(_ options: PuppetOptions) { self.options = options }

    /// How many puppets there are.
    public var count: Int { puppets.count }

    /// The nicks the pool asked for, to recognise the puppets' own lines.
    public var nicks: [String] { puppets.values.map(\.nick) }

    /// A chat user speaks: their puppet, a new one, or the relay nick.
    public mutating func speak(userId: String, name: String, at now: Duration) -> Route {
        guard options.enabled else { return .relay }
        if let puppet = puppets[userId] {
            puppets[userId]?.lastSpoke = now
            return .use(nick: puppet.nick)
        }
        guard puppets.count < options.limit else { return .relay }
        let nick = uniqueNick(for: name)
        puppets[userId] = Puppet(nick: nick, lastSpoke: now)
        return .start(nick: nick)
    }

    /// The puppet is still busy (lines waiting): it counts as having spoken now.
    public mutating func touch(userId: String, at now: Duration) {
        puppets[userId]?.lastSpoke = now
    }

    /// The users whose puppets were quiet for `idleTimeout`; they leave the pool.
    public mutating func idle(at now: Duration) -> [String] {
        let quiet = puppets.filter { now - $0.value.lastSpoke >= options.idleTimeout }.map(\.key).sorted()
        for userId in quiet { puppets[userId] = nil }
        return quiet
    }

    /// The user's puppet leaves the pool (its connection gave up).
    public mutating func remove(userId: String) { puppets[userId] = nil }

    /// `name` made a nick: characters a nick cannot have dropped, a letter first, cut so that the
    /// suffix fits `maxNickLength`; another puppet's nick (IRC compares case-insensitively) gets a number.
    func uniqueNick(for name: String) -> String {
        let base = Self.sanitise(name, room: options.maxNickLength - options.suffix.count)
        let taken = Set(puppets.values.map { IRCCase.fold($0.nick) })
        var nick = base + options.suffix
        var number = 2
        while taken.contains(IRCCase.fold(nick)) {
            let digits = String(number)
            nick = String(base.prefix(max(1, options.maxNickLength - options.suffix.count - digits.count))) + digits + options.suffix
            number += 1
        }
        return nick
    }

    /// The characters of `name` a nick may have, starting with a letter or special, at most `room` long.
    static func sanitise(_ name: String, room: Int) -> String {
        var nick = String(name.filter(isNickCharacter).prefix(max(1, room)))
        if let first = nick.first, first.isNumber || first == "-" { nick = "_" + nick.prefix(max(0, room - 1)) }
        return nick.isEmpty ? "_" : nick
    }

    /// A character allowed in a nick (RFC 2812: letters, digits, `[]\`_^{|}` and `-`), ASCII only.
    static func isNickCharacter(_ character: Character) -> Bool {
        guard character.isASCII else { return false }
        return character.isLetter || character.isNumber || "[]\\`_^{|}-".contains(character)
    }
}
