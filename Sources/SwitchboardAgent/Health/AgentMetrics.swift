import Metrics
import Prometheus
import Synchronization

/// The time each plugin's handlers take and the errors they throw, per bot and plugin (see
/// ``Agent/prometheusText()``), recorded with swift-metrics on a Prometheus registry of the agent's
/// own, so that several agents in one process (tests) keep their figures apart.
final class AgentMetrics: Sendable {
    /// Handler latency buckets: a reply takes milliseconds, a handler that waits on the talk limit
    /// or on another service seconds.
    static let buckets: [Duration] = [
        .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30),
    ]

    private struct Key: Hashable {
        var bot: String
        var plugin: String
    }

    private struct Recorders: Sendable {
        var duration: Metrics.Timer
        var errors: Metrics.Counter
    }

    private struct State {
        var recorders: [Key: Recorders] = [:]
        /// The bots running; a removed bot's last events (handled as it stops) are not recorded.
        var bots: Set<String> = []
    }

    private let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    private let state = Mutex(State())

    init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = Self.buckets
        self.factory = factory
    }

    /// The recorders of one bot's plugin, made on first use; nil for a bot that was removed.
    private func recorders(bot: String, plugin: String) -> Recorders? {
        state.withLock { state in
            guard state.bots.contains(bot) else { return nil }
            let key = Key(bot: bot, plugin: plugin)
            if let found = state.recorders[key] { return found }
            let dimensions = [("bot", bot), ("plugin", plugin)]
            let made = Recorders(
                duration: Metrics.Timer(label: "switchboard_agent_handler_duration_seconds", dimensions: dimensions, factory: factory),
                errors: Metrics.Counter(label: "switchboard_agent_handler_errors_total", dimensions: dimensions, factory: factory))
            state.recorders[key] = made
            return made
        }
    }

    /// A bot that starts: its plugins show at zero before their first call.
    func register(bot: String, plugins: [String]) {
        state.withLock { _ = $0.bots.insert(bot) }
        for plugin in plugins { _ = recorders(bot: bot, plugin: plugin) }
    }

    /// A handler call that returned or threw (`failed`), and how long it took.
    func handlerCall(bot: String, plugin: String, duration: Duration, failed: Bool) {
        guard let recorders = recorders(bot: bot, plugin: plugin) else { return }
        recorders.duration.recordNanoseconds(duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
        if failed { recorders.errors.increment() }
    }

    /// A plugin's `run` that crashed.
    func runFailed(bot: String, plugin: String) {
        recorders(bot: bot, plugin: plugin)?.errors.increment()
    }

    /// Forgets a bot that stopped (removed, or restarting with another configuration), so that
    /// `/metrics` no longer lists it until it registers again.
    func remove(bot: String) {
        let removed = state.withLock { state in
            state.bots.remove(bot)
            let keys = state.recorders.keys.filter { $0.bot == bot }
            return keys.compactMap { state.recorders.removeValue(forKey: $0) }
        }
        for recorders in removed {
            recorders.duration.destroy()
            recorders.errors.destroy()
        }
    }

    /// The registry in Prometheus' text format.
    func prometheusText() -> String {
        registry.emitToString()
    }
}
