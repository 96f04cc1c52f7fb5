import SwitchboardClient

/// One bot's figures at one moment: what `/healthz` and `/metrics` show.
public struct BotFigures: Sendable {
    /// The bot's name.
    public var name: String
    /// Its connection status.
    public var status: ConnectionStatus
    /// Handler calls that returned.
    public var eventsHandled: Int
    /// Handler calls that threw.
    public var handlerErrors: Int
    /// Time spent in handlers, in seconds, over all calls.
    public var handlerSeconds: Double
    /// Messages sent by the bot and not yet acknowledged by the server.
    public var outboxLength: Int

    /// Figures of a bot.
    public init(name: String, status: ConnectionStatus, eventsHandled: Int, handlerErrors: Int, handlerSeconds: Double, outboxLength: Int) {
        self.name = name
        self.status = status
        self.eventsHandled = eventsHandled
        self.handlerErrors = handlerErrors
        self.handlerSeconds = handlerSeconds
        self.outboxLength = outboxLength
    }
}

/// The agent's health, from every bot's figures: the body of `/healthz` and the text of `/metrics`.
///
/// `status` is `ok` when every bot is online (connected, or long polling), `degraded` otherwise.
///
/// ```json
/// {"status":"ok","bots":[{"name":"dice","state":"connected","online":true,"eventsHandled":42,"handlerErrors":0,"handlerSeconds":0.12,"outbox":0}]}
/// ```
public struct HealthReport: Sendable, Hashable, Codable {
    /// A bot's line.
    public struct Bot: Sendable, Hashable, Codable {
        public var name: String
        /// `connecting`, `connected`, `polling`, `reconnecting`, `disconnected` or `failed`.
        public var state: String
        /// Whether events reach the bot.
        public var online: Bool
        public var eventsHandled: Int
        public var handlerErrors: Int
        public var handlerSeconds: Double
        /// Messages not yet acknowledged.
        public var outbox: Int
    }

    /// `ok` or `degraded`.
    public var status: String
    /// The bots, by name.
    public var bots: [Bot]

    /// Whether every bot is online.
    public var isHealthy: Bool { status == "ok" }

    /// The connection states, in the order `/metrics` lists them.
    public static let states = ["connecting", "connected", "polling", "reconnecting", "disconnected", "failed"]

    /// The report of `figures`.
    public init(_ figures: [BotFigures]) {
        bots = figures.sorted { $0.name < $1.name }.map { bot in
            Bot(
                name: bot.name, state: Self.state(of: bot.status), online: bot.status.isOnline, eventsHandled: bot.eventsHandled,
                handlerErrors: bot.handlerErrors, handlerSeconds: bot.handlerSeconds, outbox: bot.outboxLength
            )
        }
        status = bots.allSatisfy(\.online) ? "ok" : "degraded"
    }

    /// The bots' states and totals in Prometheus' text format (version 0.0.4):
    ///
    /// | metric | type | what |
    /// |---|---|---|
    /// | `switchboard_agent_connection_state{bot,state}` | gauge | 1 for the bot's state, 0 for the others |
    /// | `switchboard_agent_events_handled_total{bot}` | counter | handler calls that returned |
    /// | `switchboard_agent_outbox_length{bot}` | gauge | messages not yet acknowledged |
    ///
    /// An agent's `/metrics` adds the handlers' latency histogram and errors per bot and plugin
    /// (``Agent/prometheusText()``).
    public func prometheusText() -> String {
        var text = ""
        func family(_ name: String, _ type: String, _ help: String, _ samples: (Bot) -> [(suffix: String, labels: String, value: String)]) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for bot in bots {
                for sample in samples(bot) {
                    text += "\(name)\(sample.suffix){bot=\"\(Self.escape(bot.name))\"\(sample.labels)} \(sample.value)\n"
                }
            }
        }
        family("switchboard_agent_connection_state", "gauge", "1 for the bot's connection state, 0 for the others.") { bot in
            Self.states.map { ("", ",state=\"\($0)\"", $0 == bot.state ? "1" : "0") }
        }
        family("switchboard_agent_events_handled_total", "counter", "Handler calls of the bot that returned.") { [("", "", "\($0.eventsHandled)")] }
        family("switchboard_agent_outbox_length", "gauge", "Messages sent by the bot and not yet acknowledged by the server.") {
            [("", "", "\($0.outbox)")]
        }
        return text
    }

    static func state(of status: ConnectionStatus) -> String {
        switch status {
        case .connecting: "connecting"
        case .connected: "connected"
        case .polling: "polling"
        case .reconnecting: "reconnecting"
        case .disconnected: "disconnected"
        case .failed: "failed"
        }
    }

    /// A label value as the text format wants it: `\`, `"` and new lines escaped.
    static func escape(_ value: String) -> String {
        var escaped = ""
        for character in value {
            switch character {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}

extension Agent {
    /// Every running bot's figures: what `/healthz` shows.
    public func figures() -> [BotFigures] {
        statistics().map { name, snapshot in
            BotFigures(
                name: name, status: snapshot.status, eventsHandled: snapshot.eventsHandled, handlerErrors: snapshot.handlerErrors,
                handlerSeconds: snapshot.handlerSeconds, outboxLength: snapshot.outboxLength
            )
        }
    }

    /// Everything `/metrics` shows: ``HealthReport/prometheusText()`` of every bot's figures, then
    /// the time each plugin's handlers take (a histogram) and the errors they throw, per bot and plugin:
    ///
    /// | metric | type | what |
    /// |---|---|---|
    /// | `switchboard_agent_handler_duration_seconds{bot,plugin}` | histogram | each handler call, returned or thrown: `_bucket{le}` (1 ms to 30 s), `_sum`, `_count` |
    /// | `switchboard_agent_handler_errors_total{bot,plugin}` | counter | handler calls that threw, and plugin `run`s that crashed |
    ///
    /// `plugin` is the plugin's name in the configuration, `help` for the generated `!help`, or
    /// `middleware` for the plugins' middleware.
    public func prometheusText() -> String {
        HealthReport(figures()).prometheusText() + metrics.prometheusText()
    }
}
