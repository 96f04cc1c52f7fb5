// The bridge's configuration, as the `config` of its plugin entry in the agent's YAML.

/// The IRC bridge's configuration: the networks to connect to and the rooms each relays.
///
/// ```yaml
/// plugins:
///   - name: irc
///     config:
///       networks:
///         - name: libera
///           server: irc.libera.chat        # port 6697, TLS, certificate checked
///           nick: sb-relay
///           sasl: {account: sb-relay, password: "…"}
///           mappings:
///             - {room: general, channel: "#switchboard"}
///             - {room: ops, channel: "#sb-ops", key: sesame}
/// ```
public struct IRCBridgeConfiguration: Sendable, Decodable {
    /// The networks, each with its own connection and mappings.
    public var networks: [IRCNetworkConfiguration]

    /// A configuration.
    public init(networks: [IRCNetworkConfiguration] = []) {
        self.networks = networks
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        networks = try container.decodeIfPresent([IRCNetworkConfiguration].self, forKey: .networks) ?? []
        let names = networks.map(\.name)
        if Set(names).count != names.count {
            throw DecodingError.dataCorruptedError(forKey: .networks, in: container, debugDescription: "two networks have the same name: give each a distinct `name`")
        }
    }

    private enum Key: String, CodingKey { case networks }
}

/// One IRC network: where, who, which rooms, and how messages look.
public struct IRCNetworkConfiguration: Sendable, Decodable {
    /// A short name, used in `meta.bridge.network`, logs and metrics. Default `irc`.
    public var name: String = "irc"
    /// The server's host name. Required.
    public var server: String
    /// The port. Default 6697.
    public var port: Int = 6697
    /// TLS; when absent, on for port 6697 and off otherwise.
    public var tls: Bool?
    /// Check the server's certificate. Default true.
    public var verifyCertificate: Bool = true
    /// A PEM file of extra certificate authorities to trust. Default none.
    public var trustedCertificateFile: String?
    /// The name the certificate must carry, when not `server`. Default none.
    public var serverName: String?
    /// The relay's nick. Default `switchboard`.
    public var nick: String = "switchboard"
    /// Nicks to try when `nick` is taken (then `nick` with a number). Default none.
    public var alternateNicks: [String] = []
    /// The user name (ident). Default `switchboard`.
    public var username: String = "switchboard"
    /// The real name. Default `Switchboard bridge`.
    public var realName: String = "Switchboard bridge"
    /// The server password. Default none.
    public var password: String?
    /// SASL PLAIN credentials. Default none.
    public var sasl: SASLCredentials?
    /// A NickServ password to IDENTIFY with. Default none.
    public var nickServPassword: String?
    /// The rooms and channels relayed.
    public var mappings: [IRCMapping] = []
    /// How chat messages look on IRC.
    public var format = RelayFormat()
    /// Flood control. Default a burst of 5, then one line a second.
    public var floodControl = FloodControl()
    /// What else is relayed, and how.
    public var relay = RelayOptions()
    /// Puppeting: an IRC connection per chat user who speaks. Default off.
    public var puppets = PuppetOptions()

    /// A network with defaults for everything but the server.
    public init(name: String = "irc", server: String, port: Int = 6697, nick: String = "switchboard", mappings: [IRCMapping] = []) {
        self.name = name
        self.server = server
        self.port = port
        self.nick = nick
        self.mappings = mappings
    }

    private enum Key: String, CodingKey {
        case name, server, port, tls, verifyCertificate, trustedCertificateFile, serverName, nick, alternateNicks, username, realName
        case password, sasl, nickServPassword, mappings, format, floodControl, relay, puppets
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        server = try c.decode(String.self, forKey: .server)
        name = try c.decodeIfPresent(String.self, forKey: .name) ?? name
        port = try c.decodeIfPresent(Int.self, forKey: .port) ?? port
        tls = try c.decodeIfPresent(Bool.self, forKey: .tls)
        verifyCertificate = try c.decodeIfPresent(Bool.self, forKey: .verifyCertificate) ?? verifyCertificate
        trustedCertificateFile = try c.decodeIfPresent(String.self, forKey: .trustedCertificateFile)
        serverName = try c.decodeIfPresent(String.self, forKey: .serverName)
        nick = try c.decodeIfPresent(String.self, forKey: .nick) ?? nick
        alternateNicks = try c.decodeIfPresent([String].self, forKey: .alternateNicks) ?? []
        username = try c.decodeIfPresent(String.self, forKey: .username) ?? username
        realName = try c.decodeIfPresent(String.self, forKey: .realName) ?? realName
        password = try c.decodeIfPresent(String.self, forKey: .password)
        sasl = try c.decodeIfPresent(SASLCredentials.self, forKey: .sasl)
        nickServPassword = try c.decodeIfPresent(String.self, forKey: .nickServPassword)
        mappings = try c.decodeIfPresent([IRCMapping].self, forKey: .mappings) ?? []
        if let format = try c.decodeIfPresent(FormatFields.self, forKey: .format) {
            let defaults = RelayFormat()
            self.format = RelayFormat(
                template: format.template ?? defaults.template,
                actionTemplate: format.actionTemplate ?? defaults.actionTemplate,
                maxLines: format.maxLines ?? defaults.maxLines,
                quoteLength: format.quoteLength ?? defaults.quoteLength
            )
        }
        if let flood = try c.decodeIfPresent(FloodFields.self, forKey: .floodControl) {
            floodControl = flood.off == true
                ? .off
                : FloodControl(burst: flood.burst ?? FloodControl().burst, interval: flood.intervalMilliseconds.map { .milliseconds($0) } ?? FloodControl().interval)
        }
        relay = try c.decodeIfPresent(RelayOptions.self, forKey: .relay) ?? relay
        puppets = try c.decodeIfPresent(PuppetOptions.self, forKey: .puppets) ?? puppets
        guard port > 0 && port < 65536 else {
            throw DecodingError.dataCorruptedError(forKey: .port, in: c, debugDescription: "port \(port) is not a TCP port (1 to 65535)")
        }
        guard !nick.isEmpty, !nick.contains(" ") else {
            throw DecodingError.dataCorruptedError(forKey: .nick, in: c, debugDescription: "the nick must be one word")
        }
        for mapping in mappings where !(mapping.channel.first.map { "#&+!".contains($0) } ?? false) || mapping.channel.contains(" ") || mapping.channel.contains(",") {
            throw DecodingError.dataCorruptedError(forKey: .mappings, in: c, debugDescription: "\(mapping.channel.debugDescription) is not a channel name: it starts with # (or &, +, !) and has no space or comma")
        }
    }

    private struct FormatFields: Decodable {
        var template: String?
        var actionTemplate: String?
        var maxLines: Int?
        var quoteLength: Int?
    }

    private struct FloodFields: Decodable {
        var burst: Int?
        var intervalMilliseconds: Int?
        var off: Bool?
    }

    /// The IRC connection's settings for the relay nick.
    func clientConfiguration(backoff: ReconnectBackoff = ReconnectBackoff()) -> IRCClientConfiguration {
        IRCClientConfiguration(
            server: IRCServer(host: server, port: port, tls: tls, verifyCertificate: verifyCertificate, trustedCertificateFile: trustedCertificateFile, serverName: serverName),
            session: IRCSessionConfiguration(
                nick: nick,
                alternateNicks: alternateNicks,
                username: username,
                realName: realName,
                serverPassword: password,
                sasl: sasl,
                nickServPassword: nickServPassword,
                channels: mappings.map { IRCChannel($0.channel, key: $0.key) }
            ),
            floodControl: floodControl,
            backoff: backoff
        )
    }
}

/// A room relayed to a channel and back.
public struct IRCMapping: Sendable, Hashable, Codable {
    /// The room, by id or by name.
    public var room: String
    /// The channel, with its `#`.
    public var channel: String
    /// The channel key, if it has one.
    public var key: String?

    /// A mapping.
    public init(room: String, channel: String, key: String? = nil) {
        self.room = room
        self.channel = channel
        self.key = key
    }
}

/// What the bridge relays besides messages.
public struct RelayOptions: Sendable, Hashable, Decodable {
    /// IRC joins, parts, quits, kicks and nick changes, as notices in the room. Default false.
    public var membership = false
    /// IRC topic changes. Default false.
    public var topics = false
    /// Chat reactions, as a line of text on IRC. Default false.
    public var reactions = false
    /// IRC formatting codes: `strip` or `markdown`. Default `strip`.
    public var formatting = IRCFormattingMode.strip
    /// IRC NOTICEs to a channel (often from other bots). Default true.
    public var notices = true

    /// The defaults.
    public init() {}

    private enum Key: String, CodingKey { case membership, topics, reactions, formatting, notices }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        membership = try c.decodeIfPresent(Bool.self, forKey: .membership) ?? false
        topics = try c.decodeIfPresent(Bool.self, forKey: .topics) ?? false
        reactions = try c.decodeIfPresent(Bool.self, forKey: .reactions) ?? false
        formatting = try c.decodeIfPresent(IRCFormattingMode.self, forKey: .formatting) ?? .strip
        notices = try c.decodeIfPresent(Bool.self, forKey: .notices) ?? true
    }
}
