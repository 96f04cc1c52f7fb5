import Prometheus
import Synchronization
import SwitchboardClient

/// The agent's figures per bot, for `/metrics` (Prometheus) and `/healthz`.
///
/// The agent counts each event a bot's handlers took and how long they took; a bot's connection
/// state and outbox length are read from its client when asked, through ``watch(bot:status:outbox:)``.
///
/// | metric | labels | what |
/// |---|---|---|
/// | `switchboard_agent_connection_state` | `bot`, `state` | 1 for the bot's state (`connecting`, `connected`, `polling`, `reconnecting`, `disconnected`, `failed`), 0 for the others |
/// | `switchboard_agent_events_handled_total` | `bot` | events that went through the bot's handlers |
/// | `switchboard_agent_handler_errors_total` | `bot`, `plugin` | handlers that threw |
/// | `switchboard_agent_handler_duration_seconds` | `bot` | a histogram of the time handlers took per event |
/// | `switchboard_agent_outbox_length` | `bot` | messages sent by the bot and not yet acknowledged by the server |
public final class AgentMetrics: Sendable {
    /// A bot's figures, as `/healthz` shows them.
    public struct BotHealth: Sendable, Hashable, Codable {
        /// The bot's name.
        public var name: String
        /// Its connection state.
        public var state: String
        /// Whether events reach it (connected, or polling).
        public var online: Bool
        /// Events its handlers took.
        public var eventsHandled: Int
        /// Handlers that threw.
        public var handlerErrors: Int
        /// Messages not yet acknowledged.
        public var outbox: Int
    }

    /// Every bot's figures: `ok` when every bot is online, `degraded` otherwise.
    public struct Health: Sendable, Hashable, Codable {
        /// `ok` or `degraded`.
        public var status: String
        /// The bots, by name.
        public var bots: [BotHealth]
        /// Whether every bot is online.
        public var isHealthy: Bool { status == "ok" }
    }

    private struct Probe {
        var status: @Sendable () -> ConnectionStatus
        var outbox: @Sendable () -> Int
    }

    private struct Counts {
        var handled = 0
        var errors = 0
        var failingPlugins: Set<String> = []
    }

    private struct State {
        var probes: [String: Probe] = [:]
        var counts: [String: Counts] = [:]
    }

    /// The registry `/metrics` prints.
    public let registry: PrometheusCollectorRegistry
    private let state = Mutex(State())
    private static var connectionState: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "switchboard_agent", metricName: "connection", unitName: "state",
            helpText: "1 for the bot's connection state, 0 for the others."
        )
    }
    private static var eventsHandled: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "switchboard_agent", metricName: "events_handled", unitName: "total",
            helpText: "Events that went through the bot's handlers."
        )
    }
    private static var handlerErrors: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "switchboard_agent", metricName: "handler_errors", unitName: "total",
            helpText: "Handlers of the bot that threw."
        )
    }
    private static var handlerDuration: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "switchboard_agent", metricName: "handler_duration", unitName: "seconds",
            helpText: "Time the bot's handlers took per event."
        )
    }
    private static var outboxLength: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "switchboard_agent", metricName: "outbox", unitName: "length",
            helpText: "Messages sent by the bot and not yet acknowledged by the server."
        )
    }
    private static let states = ["connecting", "connected", "polling", "reconnecting", "disconnected", "failed"]
    private static let buckets: [Duration] = [
        .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
        .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
    ]

    /// Figures on a registry of their own (several agents in one process do not mix theirs).
    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
    }

    /// Follows a bot: `status` and `outbox` are read at every `/metrics` and `/healthz`.
    ///
    /// ```swift
    /// metrics.watch(bot: "dice", status: { client.status }, outbox: { client.pendingMessages.count })
    /// ```
    public func watch(bot: String, status: @escaping @Sendable () -> ConnectionStatus, outbox: @escaping @Sendable () -> Int) {
        state.withLock { state in
            state.probes[bot] = Probe(status: status, outbox: outbox)
            if state.counts[bot] == nil { state.counts[bot] = Counts() }
        }
    }

    /// Stops following a bot (it was removed from the configuration); its series disappear.
    public func forget(bot: String) {
        let counts = state.withLock { state in
            state.probes[bot] = nil
            defer { state.counts[bot] = nil }
            return state.counts[bot]
        }
        for name in Self.states {
            registry.unregisterGauge(registry.makeGauge(descriptor: Self.connectionState, labels: [("bot", bot), ("state", name)]))
        }
        registry.unregisterGauge(registry.makeGauge(descriptor: Self.outboxLength, labels: [("bot", bot)]))
        registry.unregisterCounter(registry.makeCounter(descriptor: Self.eventsHandled, labels: [("bot", bot)]))
        registry.unregisterDurationHistogram(
            registry.makeDurationHistogram(descriptor: Self.handlerDuration, labels: [("bot", bot)], buckets: Self.buckets)
        )
        for plugin in counts?.failingPlugins ?? [] {
            registry.unregisterCounter(registry.makeCounter(descriptor: Self.handlerErrors, labels: [("bot", bot), ("plugin", plugin)]))
        }
    }

    /// Counts an event that went through `bot`'s handlers, and the time they took.
    public func handled(bot: String, duration: Duration) {
        state.withLock { $0.counts[bot, default: Counts()].handled += 1 }
        registry.makeCounter(descriptor: Self.eventsHandled, labels: [("bot", bot)]).increment()
        registry.makeDurationHistogram(descriptor: Self.handlerDuration, labels: [("bot", bot)], buckets: Self.buckets)
            .record(duration)
    }

    /// Counts a handler of `bot`'s `plugin` that threw.
    public func handlerFailed(bot: String, plugin: String) {
        state.withLock { state in
            state.counts[bot, default: Counts()].errors += 1
            state.counts[bot, default: Counts()].failingPlugins.insert(plugin)
        }
        registry.makeCounter(descriptor: Self.handlerErrors, labels: [("bot", bot), ("plugin", plugin)]).increment()
    }

    /// Every followed bot's figures, read now.
    public func health() -> Health {
        let (probes, counts) = state.withLock { ($0.probes, $0.counts) }
        let bots = probes.keys.sorted().map { name in
            let probe = probes[name]!
            let status = probe.status()
            return BotHealth(
                name: name, state: Self.name(of: status), online: status.isOnline,
                eventsHandled: counts[name]?.handled ?? 0, handlerErrors: counts[name]?.errors ?? 0, outbox: probe.outbox()
            )
        }
        return Health(status: bots.allSatisfy(\.online) ? "ok" : "degraded", bots: bots)
    }

    /// The figures in Prometheus' text format, with the connection states and outboxes read now.
    public func render() -> String {
        for bot in health().bots {
            for name in Self.states {
                registry.makeGauge(descriptor: Self.connectionState, labels: [("bot", bot.name), ("state", name)])
                    .set(name == bot.state ? 1.0 : 0.0)
            }
            registry.makeGauge(descriptor: Self.outboxLength, labels: [("bot", bot.name)]).set(Double(bot.outbox) as Double)
        }
        return registry.emitToString()
    }

    static func name(of status: ConnectionStatus) -> String {
        switch status {
        case .connecting: "connecting"
        case .connected: "connected"
        case .polling: "polling"
        case .reconnecting: "reconnecting"
        case .disconnected: "disconnected"
        case .failed: "failed"
        }
    }
}
