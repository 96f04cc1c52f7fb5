import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOPosix
import NIOWebSocket
import ServiceLifecycle
import SwitchboardProtocol
import SwitchboardStore

/// The bundled chat server: the HTTP API and the WebSocket endpoint of the protocol on one port.
///
/// A `Service`: run it in a `ServiceGroup`, which stops it gracefully on SIGINT or SIGTERM:
/// it stops accepting, closes every WebSocket with 1001, and returns once in-flight requests
/// (and so in-flight writes) have finished. Close the store after it returns.
///
/// ```swift
/// let store = try await SQLiteStore.open(path: "switchboard.db", logger: logger)
/// let server = ChatServer(configuration: ServerConfiguration(), store: store, logger: logger)
/// try await ServiceGroup(services: [server], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger).run()
/// try await store.close()
/// ```
public struct ChatServer: Service {
    let configuration: ServerConfiguration
    let store: any ChatStore
    let logger: Logger
    let onListening: @Sendable (Int) async -> Void

    /// - Parameters:
    ///   - onListening: called with the port once the server accepts connections (useful with port 0).
    public init(
        configuration: ServerConfiguration, store: any ChatStore, logger: Logger,
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.store = store
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        let metrics = ServerMetrics()
        let hub = Hub(configuration: configuration, metrics: metrics)
        let service = ChatService(configuration: configuration, store: store, hub: hub, metrics: metrics, logger: logger)
        let polls = PollSessions(maxPerUser: configuration.maxPollSessionsPerUser)
        let connections = ConnectionRegistry(maxPerAddress: configuration.maxConnectionsPerAddress)
        // Password hashing gets threads of its own, so that it never delays the database readers.
        let hashingThreads = NIOThreadPool(numberOfThreads: max(1, configuration.passwordHashThreads))
        hashingThreads.start()
        defer { hashingThreads.shutdownGracefully { _ in } }
        let hasher = PasswordHasher(
            cost: configuration.bcryptCost, pool: hashingThreads,
            capacity: max(1, configuration.passwordHashThreads) + max(0, configuration.passwordHashQueue),
            onHash: { metrics.passwordHashes.increment() }
        )
        let accounts = Accounts(service: service, hasher: hasher)

        let router = Router(context: ChatRequestContext.self)
        router.add(middleware: ErrorMiddleware(metrics: metrics))
        HTTPRoutes(service: service, accounts: accounts, polls: polls).add(to: router)
        if configuration.web { WebRoutes.mount(on: router, logger: logger) }
        // An upgrade to /ws is served by `SwitchboardChannel`; what reaches the router is a refused
        // upgrade (401 with the contract's body) or a plain GET.
        router.group("ws")
            .add(middleware: AuthMiddleware(accounts: accounts, allowsQueryToken: true))
            .get("") { _, _ -> Response in
                throw ProtocolError(.invalid, "GET /ws is a WebSocket endpoint: send 'Upgrade: websocket'")
            }

        let onListening = self.onListening
        let logger = self.logger
        let configuration = self.configuration
        let app = Application(
            router: router,
            server: HTTPServerBuilder { responder in
                SwitchboardChannel(
                    responder: responder,
                    authenticate: { token in try? await accounts.authenticate(token: token) },
                    makeWebSocketHandler: { identity in
                        SocketChannelHandler(configuration: configuration, logger: logger) { sink in
                            try await WebSocketSession.open(service: service, identity: identity, sink: sink, logger: logger)
                        }
                    },
                    maxFrameBytes: configuration.limits.maxFrameBytes,
                    connections: connections,
                    timeouts: { RequestTimeouts(configuration, now: .now()) }
                )
            },
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: nil),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                logger.info("switchboard listening", metadata: ["switchboard.address": "\(configuration.host):\(port)"])
                await onListening(port)
            },
            logger: logger
        )

        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask {
                    try? await cancelWhenGracefulShutdown {
                        try await maintain(service: service, polls: polls)
                    }
                }
                group.addTask {
                    // Past the deadline, whatever is still open (an idle socket, a client that
                    // stopped reading) is closed, so that a shutdown always ends.
                    guard (try? await gracefulShutdown()) != nil else { return }
                    guard (try? await Task.sleep(for: configuration.shutdownTimeout)) != nil else { return }
                    logger.info("shutdown deadline passed; closing the remaining connections", metadata: ["switchboard.connections": "\(connections.count)"])
                    connections.closeAll()
                }
                try await app.run()
                group.cancelAll()
            }
        } onGracefulShutdown: {
            hub.closeAll(.shuttingDown)
            polls.wakeAll()
        }
    }

    /// Closes connections whose tokens were revoked (here, by another process or node) or expired,
    /// and ends long-polling sessions that stopped polling.
    private func maintain(service: ChatService, polls: PollSessions) async throws {
        var checkedUntil = WallClock.milliseconds()
        while true {
            try await Task.sleep(for: configuration.tokenCheckInterval)
            let now = WallClock.milliseconds()
            do {
                // Overlap the windows so that a revocation committed during the last check is not missed.
                let revoked = try await store.tokensRevoked(since: checkedUntil - 5_000)
                if !revoked.isEmpty { service.hub.close(tokens: Set(revoked), .tokenRevoked) }
                checkedUntil = now
            } catch {
                logger.warning("cannot check revoked tokens", metadata: ["switchboard.error": "\(error)"])
            }
            service.hub.closeExpired(now: now)
            for session in polls.removeExpired(now: .now, expiry: configuration.pollSessionExpiry) {
                service.closeSession(session.hubConnection)
            }
        }
    }
}
