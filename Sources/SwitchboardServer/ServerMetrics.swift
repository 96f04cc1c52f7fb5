import Metrics
import Prometheus
import Synchronization
import SwitchboardProtocol

/// The server's metrics, on a registry of its own so that several servers in one process
/// (tests) do not mix their figures. `/metrics` prints the registry.
final class ServerMetrics: Sendable {
    let registry: PrometheusCollectorRegistry
    /// Open WebSocket connections and long-polling sessions.
    let connections: Meter
    /// Messages committed to the database.
    let stored: Metrics.Counter
    /// Message envelopes handed to subscribers' connections.
    let delivered: Metrics.Counter
    /// From receiving a message to handing it to every subscriber.
    let deliveryLatency: Metrics.Timer
    /// bcrypt computations (hashes and verifications of passwords).
    let passwordHashes: Metrics.Counter
    private let factory: PrometheusMetricsFactory
    /// What the hub holds, read when the metrics are rendered: every figure but the rooms falls
    /// back to zero once every connection has closed.
    private let census = Mutex<(@Sendable () -> [(label: String, value: Int)])?>(nil)

    init() {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2),
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .milliseconds(500), .seconds(1),
        ]
        self.registry = registry
        self.factory = factory
        self.connections = Meter(label: "switchboard_connections", factory: factory)
        self.stored = Metrics.Counter(label: "switchboard_messages_stored_total", factory: factory)
        self.delivered = Metrics.Counter(label: "switchboard_messages_delivered_total", factory: factory)
        self.deliveryLatency = Metrics.Timer(label: "switchboard_delivery_latency_seconds", factory: factory)
        self.passwordHashes = Metrics.Counter(label: "switchboard_password_hashes_total", factory: factory)
    }

    /// Counts an error answered to a client, by code.
    func error(_ code: ErrorCode) {
        Metrics.Counter(label: "switchboard_errors_total", dimensions: [("code", code.rawValue)], factory: factory).increment()
    }

    /// Records the time since `start`.
    func recordDelivery(since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        deliveryLatency.recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
    }

    /// Sets where `render` reads the hub's live objects from.
    func setCensus(_ read: @escaping @Sendable () -> [(label: String, value: Int)]) {
        census.withLock { $0 = read }
    }

    /// The registry in Prometheus' text format.
    func render() -> String {
        if let read = census.withLock({ $0 }) {
            for (label, value) in read() {
                Gauge(label: label, factory: factory).record(value)
            }
        }
        return registry.emitToString()
    }
}

