import Logging
import Metrics
import SwitchboardClient
import SwitchboardProtocol
import Synchronization

/// A message for the chat side, from IRC.
public struct ChatPost: Sendable, Hashable {
    /// The room.
    public var roomId: String
    /// The text (`/me …` for an IRC ACTION).
    public var content: String
    /// `{"bridge": {"network", "channel", "nick"}}`, so that clients can show the IRC nick.
    public var meta: JSONValue

    /// Puts the post in `client`'s outbox. True when done with it: queued, or refused as invalid
    /// (logged: trying again cannot help, and would hold up everything behind it). False when it
    /// is worth trying again: the outbox is full, or the client is shutting down.
    func enqueue(in client: ChatClient, logger: Logger) -> Bool {
        do {
            try client.enqueue(content, to: roomId, meta: meta)
            return true
        } catch let error as ClientError where error.code == .invalid {
            logger.info("chat refused a message from IRC; it is dropped", metadata: ["irc.error": "\(error)"])
            return true
        } catch {
            return false
        }
    }
}

/// A chat message for IRC.
public struct ChatMessageToRelay: Sendable, Hashable {
    /// The room it was sent to.
    public var roomId: String
    /// The room's name, for `{room}` in the template.
    public var roomName: String
    /// The author's name, for `{nick}` and the puppet's nick.
    public var senderName: String
    /// The author's user id, to give them a puppet (when puppets are on). Default none: the relay nick.
    public var senderId: String?
    /// The text.
    public var content: String
    /// The message's `meta`, to recognise what a bridge relayed.
    public var meta: JSONValue?
    /// The message it answers, when it is a reply and that message was found.
    public var quote: ReplyQuote?

    /// A message.
    public init(roomId: String, roomName: String, senderName: String, senderId: String? = nil, content: String, meta: JSONValue? = nil, quote: ReplyQuote? = nil) {
        self.roomId = roomId
        self.roomName = roomName
        self.senderName = senderName
        self.senderId = senderId
        self.content = content
        self.meta = meta
        self.quote = quote
    }
}

extension ReplyQuote {
    /// The message `reply` answers, looked up in the 100 messages of its room before it, with its
    /// author's name (the IRC nick for a message relayed from IRC). Nil when it is not a reply, or
    /// the answered message is older or cannot be read: the reply is then relayed without a quote.
    public static func lookUp(for reply: Message, client: ChatClient) async -> ReplyQuote? {
        guard let id = reply.replyTo,
            let page = try? await client.history(in: reply.roomId, before: reply.seq, limit: 100),
            let answered = page.messages.last(where: { $0.id == id }), !answered.deleted
        else { return nil }
        if let nick = answered.meta?["bridge"]?["nick"]?.stringValue {
            return ReplyQuote(author: nick, content: answered.content)
        }
        var author = client.cachedUser(id: answered.userId)?.username
        if author == nil { author = try? await client.user(id: answered.userId).username }
        return ReplyQuote(author: author ?? answered.userId, content: answered.content)
    }
}

/// One IRC network relayed to its rooms: the relay nick's connection, the mappings, and the
/// formatting and loop rules in both directions. Independent of the agent, so that it can be
/// driven by anything that posts to chat.
public final class NetworkRelay: Sendable {
    /// The network's configuration.
    public let network: IRCNetworkConfiguration
    /// The relay nick's IRC connection.
    public let irc: IRCClient
    private let logger: Logger
    private let post: @Sendable (ChatPost) async -> Void
    private let rooms: Mutex<[String: IRCMapping]>  // room id → mapping, once resolved
    private let metrics: RelayMetrics
    private let backoff: ReconnectBackoff
    private let pool: Mutex<PuppetPool>
    private let puppets = Mutex<[String: IRCClient]>([:])  // chat user id → the puppet's connection
    private let leavingPuppets = Mutex<[ObjectIdentifier: IRCClient]>([:])  // quit, their QUIT perhaps still on its way
    /// Where puppets to run go, while `run()` runs (a stream of each run's own: one ends with its run).
    private let puppetStarts = Mutex<AsyncStream<IRCClient>.Continuation?>(nil)
    private let clock = ContinuousClock()
    private let origin: ContinuousClock.Instant

    /// A relay; `post` delivers IRC messages to chat (through the client's outbox, so that nothing
    /// is lost while chat is down). Nothing connects until `run()`.
    public init(network: IRCNetworkConfiguration, logger: Logger, backoff: ReconnectBackoff = ReconnectBackoff(), post: @escaping @Sendable (ChatPost) async -> Void) {
        self.network = network
        self.logger = logger
        self.post = post
        self.rooms = Mutex([:])
        self.metrics = RelayMetrics(network: network.name)
        self.backoff = backoff
        self.pool = Mutex(PuppetPool(network.puppets))
        self.origin = clock.now
        let box = RelayBox()
        self.irc = IRCClient(configuration: network.clientConfiguration(backoff: backoff), logger: logger) { event in
            await box.relay?.receive(event)
        }
        box.relay = self
    }

    /// Connects and relays until cancelled, publishing the connection's health as metrics; runs
    /// puppets as they are needed and makes idle ones quit. May run again after it returns.
    public func run() async throws {
        let (starts, continuation) = AsyncStream.makeStream(of: IRCClient.self)
        puppetStarts.withLock { $0 = continuation }
        defer {
            // The puppets' connections ended with the run: the next run starts afresh.
            pool.withLock { pool in
                puppetStarts.withLock { $0 = nil }
                pool = PuppetPool(network.puppets)
                puppets.withLock { $0.removeAll() }
            }
            continuation.finish()
        }
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await self.irc.run() }
            group.addTask {
                while !Task.isCancelled {
                    await self.quitIdlePuppets()
                    self.metrics.update(self.irc.status, puppets: self.puppets.withLock { $0.values.filter { $0.status.state == .registered }.count })
                    try await Task.sleep(for: .seconds(1))
                }
            }
            for await puppet in starts {
                group.addTask {
                    // One puppet's failure is its own: the others and the relay carry on.
                    do {
                        try await puppet.run()
                    } catch {
                        self.logger.info("a puppet's connection ended", metadata: ["irc.nick": "\(puppet.configuration.session.nick)", "irc.error": "\(error)"])
                    }
                    // Its QUIT reaches the relay nick about when its own connection closes: it
                    // stays the bridge's own a little longer, so that it is not relayed as a quit.
                    try? await Task.sleep(for: .seconds(5))
                    _ = self.leavingPuppets.withLock { $0.removeValue(forKey: ObjectIdentifier(puppet)) }
                }
            }
        }
    }

    private var now: Duration { clock.now - origin }

    /// Puppets quiet for the idle time, with nothing left to send, say QUIT.
    private func quitIdlePuppets() async {
        guard network.puppets.enabled else { return }
        let leaving: [IRCClient] = pool.withLock { pool in
            puppets.withLock { puppets in
                for (userId, puppet) in puppets where puppet.status.queued + puppet.status.unconfirmed > 0 {
                    pool.touch(userId: userId, at: now)
                }
                return pool.idle(at: now).compactMap { puppets.removeValue(forKey: $0) }
            }
        }
        leavingPuppets.withLock { leavingPuppets in
            for puppet in leaving { leavingPuppets[ObjectIdentifier(puppet)] = puppet }
        }
        for puppet in leaving {
            logger.info("an idle puppet leaves IRC", metadata: ["irc.nick": "\(puppet.status.nick ?? puppet.configuration.session.nick)"])
            await puppet.quit("idle")
        }
    }

    /// Whether `nick` is the relay's or one of its puppets': their lines are never relayed back.
    public func isOwn(nick: String) -> Bool {
        if IRCCase.equal(nick, irc.status.nick ?? network.nick) { return true }
        let isPuppet: (IRCClient) -> Bool = { IRCCase.equal(nick, $0.status.nick ?? $0.configuration.session.nick) }
        return puppets.withLock { $0.values.contains(where: isPuppet) } || leavingPuppets.withLock { $0.values.contains(where: isPuppet) }
    }

    /// The connection a chat user speaks through, and whether it is a puppet.
    private func connection(for message: ChatMessageToRelay) -> (IRCClient, puppet: Bool) {
        guard network.puppets.enabled, let userId = message.senderId else { return (irc, false) }
        return pool.withLock { pool in
            switch pool.speak(userId: userId, name: message.senderName, at: now) {
            case .relay:
                return (irc, false)
            case .use:
                if let puppet = puppets.withLock({ $0[userId] }) { return (puppet, true) }
                pool.remove(userId: userId)
                return (irc, false)
            case .start(let nick):
                // Not running: nothing would connect the puppet.
                guard let starts = puppetStarts.withLock({ $0 }) else {
                    pool.remove(userId: userId)
                    return (irc, false)
                }
                var configuration = network.clientConfiguration(backoff: backoff)
                configuration.session.nick = nick
                configuration.session.alternateNicks = []
                configuration.session.realName = "\(message.senderName) (via Switchboard)"
                configuration.session.sasl = nil
                configuration.session.nickServPassword = nil
                let puppet = IRCClient(configuration: configuration, logger: logger) { _ in
                    // The relay nick hears the channels; a puppet only speaks.
                }
                puppets.withLock { $0[userId] = puppet }
                starts.yield(puppet)
                return (puppet, true)
            }
        }
    }

    /// Tells the relay a room's id and name: mappings name rooms either way.
    public func resolve(roomId: String, name: String?) {
        guard let mapping = network.mappings.first(where: { $0.room == roomId || $0.room == name }) else { return }
        rooms.withLock { $0[roomId] = mapping }
    }

    /// The channel a room is relayed to, if any.
    public func channel(for roomId: String) -> String? { rooms.withLock { $0[roomId]?.channel } }

    /// Relays a chat message to IRC, unless it came from a bridge on this network (no loops).
    /// Returns the lines queued.
    @discardableResult
    public func relayToIRC(_ message: ChatMessageToRelay) async throws -> [String] {
        guard let channel = channel(for: message.roomId) else { return [] }
        if let origin = message.meta?["bridge"]?["network"]?.stringValue, origin == network.name { return [] }
        var text = message.content
        var action = false
        if text.hasPrefix("/me ") {
            text = String(text.dropFirst(4))
            action = true
        }
        let (connection, isPuppet) = connection(for: message)
        var format = network.format
        if isPuppet {
            // A puppet speaks as itself: its text alone.
            format.template = "{text}"
            format.actionTemplate = "{text}"
        }
        let lines = format.lines(
            nick: message.senderName,
            room: message.roomName,
            text: format.quoting(message.quote, in: text),
            action: action,
            budget: connection.textBudget(for: channel, action: action)
        )
        try await connection.send(lines, to: channel, action: action)
        return lines
    }

    /// Relays a reaction as text, when `relay.reactions` is on.
    public func relayReaction(_ reaction: String, by senderName: String, roomId: String, action: String) async throws {
        guard network.relay.reactions, action == "add", let channel = channel(for: roomId) else { return }
        try await irc.send(["\(RelayFormat.noPing(senderName)) reacted \(reaction)"], to: channel)
    }

    private func room(for channel: String) -> String? {
        rooms.withLock { rooms in rooms.first { IRCCase.equal($0.value.channel, channel) }?.key }
    }

    private func receive(_ event: IRCClientEvent) async {
        guard case .irc(let event) = event else { return }
        // The puppets' comings and goings are the bridge's own.
        if let nick = event.nick, isOwn(nick: nick) { return }
        switch event {
        case .message(let message):
            guard let channel = message.channel, let roomId = room(for: channel) else { return }
            guard !message.isEcho else { return }
            guard !message.isNotice || network.relay.notices else { return }
            let text = chatText(message.text)
            guard !text.isEmpty else { return }
            await post(ChatPost(roomId: roomId, content: message.isAction ? "/me " + text : text, meta: meta(channel: channel, nick: message.nick)))
        case .join(let channel, let nick) where network.relay.membership:
            await notice("\(nick) joined \(channel)", channel: channel, nick: nick)
        case .part(let channel, let nick, let reason) where network.relay.membership:
            await notice("\(nick) left \(channel)" + because(reason), channel: channel, nick: nick)
        case .kick(let channel, let nick, let by, let reason) where network.relay.membership:
            await notice("\(nick) was kicked from \(channel) by \(by)" + because(reason), channel: channel, nick: nick)
        case .quit(let nick, let reason, let channels) where network.relay.membership:
            for channel in channels { await notice("\(nick) quit" + because(reason), channel: channel, nick: nick) }
        case .nickChange(let old, let new, let channels) where network.relay.membership:
            for channel in channels { await notice("\(old) is now known as \(new)", channel: channel, nick: new) }
        case .topic(let channel, let nick?, let topic) where network.relay.topics:
            await notice("\(nick) set the topic of \(channel): \(chatText(topic))", channel: channel, nick: nick)
        default:
            break
        }
    }

    /// IRC text as chat takes it: formatting converted, refused control characters removed, trimmed.
    private func chatText(_ text: String) -> String {
        IRCFormatting.convert(text, mode: network.relay.formatting).trimmingSpaces()
    }

    /// " (reason)" for a part, kick or quit, or nothing when there is no reason.
    private func because(_ reason: String) -> String {
        let reason = chatText(reason)
        return reason.isEmpty ? "" : " (\(reason))"
    }

    private func notice(_ text: String, channel: String, nick: String) async {
        guard let roomId = room(for: channel) else { return }
        await post(ChatPost(roomId: roomId, content: text, meta: meta(channel: channel, nick: nick, event: true)))
    }

    private func meta(channel: String, nick: String, event: Bool = false) -> JSONValue {
        var bridge: [String: JSONValue] = ["network": .string(network.name), "channel": .string(channel), "nick": .string(nick)]
        if event { bridge["event"] = .bool(true) }
        return .object(["bridge": .object(bridge)])
    }
}

extension IRCEvent {
    /// Whose doing it is, when someone's.
    fileprivate var nick: String? {
        switch self {
        case .message(let message): message.nick
        case .join(_, let nick), .part(_, let nick, _), .kick(_, let nick, _, _), .quit(let nick, _, _), .nickChange(let nick, _, _): nick
        case .topic(_, let nick, _): nick
        case .refused: nil
        }
    }
}

/// Lets the IRC client's event handler reach the relay that owns it (set once, right after init).
private final class RelayBox: @unchecked Sendable {
    // Written once in `NetworkRelay.init` before the client can run; read only after.
    nonisolated(unsafe) var relay: NetworkRelay?
}

/// Per-network gauges for the agent's `/metrics`.
private struct RelayMetrics: Sendable {
    let connected: Gauge
    let queued: Gauge
    let unconfirmed: Gauge
    let lag: Gauge
    let floodDelay: Gauge
    let sent: Gauge
    let puppets: Gauge

    init(network: String) {
        let dimensions = [("network", network)]
        connected = Gauge(label: "switchboard_irc_connected", dimensions: dimensions)
        queued = Gauge(label: "switchboard_irc_queue_length", dimensions: dimensions)
        unconfirmed = Gauge(label: "switchboard_irc_unconfirmed_lines", dimensions: dimensions)
        lag = Gauge(label: "switchboard_irc_lag_seconds", dimensions: dimensions)
        floodDelay = Gauge(label: "switchboard_irc_flood_delay_seconds", dimensions: dimensions)
        sent = Gauge(label: "switchboard_irc_sent_lines", dimensions: dimensions)
        puppets = Gauge(label: "switchboard_irc_puppets_connected", dimensions: dimensions)
    }

    func update(_ status: IRCClientStatus, puppets puppetCount: Int) {
        puppets.record(puppetCount)
        connected.record(status.state == .registered ? 1 : 0)
        queued.record(status.queued)
        unconfirmed.record(status.unconfirmed)
        lag.record(status.lag.map(Self.seconds) ?? 0)
        floodDelay.record(Self.seconds(status.floodDelay))
        sent.record(status.sent)
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}

extension String {
    fileprivate func trimmingSpaces() -> String {
        var result = Substring(self)
        while let first = result.first, first.isWhitespace { result.removeFirst() }
        while let last = result.last, last.isWhitespace { result.removeLast() }
        return String(result)
    }
}
