import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import SwitchboardProtocol

/// The agent's health endpoint: `GET /healthz` and Prometheus `GET /metrics`, on a port of its own.
///
/// `/healthz` answers 200 with a ``HealthReport`` when every bot is online, and 503 with
/// `"status":"degraded"` when one is not (connecting, reconnecting, failed), so that a supervisor
/// or load balancer sees a bot that cannot reach its server. `/metrics` prints
/// ``Agent/prometheusText()``. The figures are read at each request.
///
/// A `Service`: it stops gracefully with its service group, or when its task is cancelled.
///
/// ```swift
/// let health = HealthListener(port: 9090, agent: agent, logger: logger)
/// try await ServiceGroup(services: [agent, health], gracefulShutdownSignals: [.sigterm], logger: logger).run()
/// ```
public struct HealthListener: Service {
    /// The address to listen on.
    public let host: String
    /// The port; 0 picks a free one.
    public let port: Int
    /// Reads every bot's figures.
    public let figures: @Sendable () -> [BotFigures]
    /// The text of `/metrics`.
    public let metrics: @Sendable () -> String
    let logger: Logger
    let onListening: @Sendable (Int) async -> Void

    /// A listener on `host`:`port` showing `agent`'s health and metrics.
    ///
    /// - Parameter onListening: called with the port once it accepts connections (useful with port 0).
    public init(
        host: String = "127.0.0.1", port: Int, agent: Agent, logger: Logger, onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) {
        self.init(host: host, port: port, figures: { agent.figures() }, metrics: { agent.prometheusText() }, logger: logger, onListening: onListening)
    }

    /// A listener on `host`:`port` showing `figures`, and `metrics` (by default the figures' ``HealthReport/prometheusText()``).
    ///
    /// - Parameter onListening: called with the port once it accepts connections (useful with port 0).
    public init(
        host: String = "127.0.0.1", port: Int, figures: @escaping @Sendable () -> [BotFigures], metrics: (@Sendable () -> String)? = nil,
        logger: Logger, onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) {
        self.host = host
        self.port = port
        self.figures = figures
        self.metrics = metrics ?? { HealthReport(figures()).prometheusText() }
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        let router = Router()
        router.get("healthz") { [figures] _, _ in
            let report = HealthReport(figures())
            return try jsonResponse(report, status: report.isHealthy ? .ok : .serviceUnavailable)
        }
        router.get("metrics") { [metrics] _, _ in
            Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: metrics()))
            )
        }
        try await serveHTTP(router: router, host: host, port: port, name: "health", logger: logger, onListening: onListening)
    }
}

/// Runs `router` on `host`:`port` until the task is cancelled or its service group shuts down gracefully.
func serveHTTP(
    router: Router<BasicRequestContext>, host: String, port: Int, name: String, logger: Logger,
    onListening: @escaping @Sendable (Int) async -> Void
) async throws {
    let app = Application(
        router: router,
        configuration: .init(address: .hostname(host, port: port), serverName: nil),
        onServerRunning: { channel in
            let port = channel.localAddress?.port ?? 0
            logger.info("agent \(name) listener ready", metadata: ["agent.listener": "\(name)", "agent.address": "\(host):\(port)"])
            await onListening(port)
        },
        logger: logger
    )
    // A group of its own, so that cancelling the task (a plugin stopped, a bot removed) stops the
    // server as gracefully as a signal does.
    let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [], logger: logger))
    try await withGracefulShutdownHandler {
        try await withTaskCancellationHandler {
            try await group.run()
        } onCancel: {
            Task { await group.triggerGracefulShutdown() }
        }
    } onGracefulShutdown: {
        Task { await group.triggerGracefulShutdown() }
    }
}

/// A JSON answer.
func jsonResponse(_ value: some Encodable, status: HTTPResponse.Status) throws -> Response {
    Response(
        status: status,
        headers: [.contentType: "application/json; charset=utf-8"],
        body: ResponseBody(byteBuffer: ByteBuffer(bytes: try Wire.encode(value)))
    )
}

/// A JSON error answer in the protocol's shape: `{"error":{"code":…,"message":…}}`.
func errorResponse(status: Int, code: ErrorCode, message: String) -> Response {
    let body = (try? Wire.encode(ErrorResponse(error: ProtocolError(code, message)))) ?? []
    return Response(
        status: HTTPResponse.Status(code: status),
        headers: [.contentType: "application/json; charset=utf-8"],
        body: ResponseBody(byteBuffer: ByteBuffer(bytes: body))
    )
}
