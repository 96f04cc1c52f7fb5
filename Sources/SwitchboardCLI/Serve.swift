import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import SwitchboardPostgres
import SwitchboardProtocol
import SwitchboardServer
import SwitchboardSQLite
import SwitchboardStore

/// The value of an environment variable, or a default.
func environment<Value: LosslessStringConvertible>(_ name: String, _ fallback: Value) -> Value {
    ProcessInfo.processInfo.environment[name].flatMap(Value.init) ?? fallback
}

extension ServerConfiguration.Registration: ExpressibleByArgument {}

/// `--synchronous`: how SQLite makes commits durable.
enum SynchronousMode: String, ExpressibleByArgument, CaseIterable {
    /// Each commit waits for `fsync`: an ack means the message survives a power cut.
    case full
    /// Commits are made durable at checkpoints: a power cut may lose the newest acked messages
    /// (never the database). For measuring the server apart from the disk.
    case normal

    var store: SQLiteStore.Configuration.Synchronous {
        switch self {
        case .full: .full
        case .normal: .normal
        }
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the chat server (HTTP API and WebSocket on one port).")


    @Option(help: "Address to listen on; 0.0.0.0 exposes the server to the network (env: SWITCHBOARD_HOST).")
    var host: String = environment("SWITCHBOARD_HOST", ServerConfiguration().host)

    @Option(help: "Port to listen on (env: WS_PORT).")
    var port: Int = environment("WS_PORT", ServerConfiguration().port)

    @OptionGroup var database: DatabaseOptions

    @Option(help: "Whether anyone may register: open or closed (env: SWITCHBOARD_REGISTRATION).")
    var registration: ServerConfiguration.Registration = ServerConfiguration.Registration(rawValue: environment("SWITCHBOARD_REGISTRATION", "open")) ?? .open

    @Option(help: "Most characters in a message (env: SWITCHBOARD_MAX_CONTENT_LENGTH).")
    var maxContentLength: Int = environment("SWITCHBOARD_MAX_CONTENT_LENGTH", ServerConfiguration().limits.maxContentLength)

    @Option(help: "Largest WebSocket frame in bytes; larger closes the connection with 1009 (env: SWITCHBOARD_MAX_FRAME_BYTES).")
    var maxFrameBytes: Int = environment("SWITCHBOARD_MAX_FRAME_BYTES", ServerConfiguration().limits.maxFrameBytes)

    @Option(help: "Messages a user may send each second (env: SWITCHBOARD_MESSAGES_PER_SECOND).")
    var messagesPerSecond: Double = environment("SWITCHBOARD_MESSAGES_PER_SECOND", ServerConfiguration().messagesPerSecond)

    @Option(help: "Messages a user may send at once (env: SWITCHBOARD_MESSAGE_BURST).")
    var messageBurst: Double = environment("SWITCHBOARD_MESSAGE_BURST", ServerConfiguration().messageBurst)

    @Option(help: "Typing indicators a user may send each second (env: SWITCHBOARD_TYPING_PER_SECOND).")
    var typingPerSecond: Double = environment("SWITCHBOARD_TYPING_PER_SECOND", ServerConfiguration().typingPerSecond)

    @Option(help: "Most messages a join replays; past it the client pages over HTTP (env: SWITCHBOARD_REPLAY_CAP).")
    var replayCap: Int = environment("SWITCHBOARD_REPLAY_CAP", ServerConfiguration().limits.replayCap)

    @Option(help: "Milliseconds after the last typing indicator before the server sends isTyping false (env: SWITCHBOARD_TYPING_EXPIRY_MS).")
    var typingExpiryMs: Int = environment("SWITCHBOARD_TYPING_EXPIRY_MS", 6000)

    @Option(help: "Milliseconds between WebSocket pings (env: SWITCHBOARD_PING_INTERVAL_MS).")
    var pingIntervalMs: Int = environment("SWITCHBOARD_PING_INTERVAL_MS", 25_000)

    @Option(help: "Milliseconds a ping may go unanswered before the connection closes (env: SWITCHBOARD_PING_TIMEOUT_MS).")
    var pingTimeoutMs: Int = environment("SWITCHBOARD_PING_TIMEOUT_MS", 10_000)

    @Option(help: "bcrypt cost of password hashes (env: SWITCHBOARD_BCRYPT_COST).")
    var bcryptCost: UInt8 = environment("SWITCHBOARD_BCRYPT_COST", ServerConfiguration().bcryptCost)

    @Option(help: """
        SQLite durability: full (an ack waits for fsync, so an acked message survives a power cut) or normal \
        (faster; a power cut may lose the newest acked messages, never the database) (env: SWITCHBOARD_SYNCHRONOUS).
        """)
    var synchronous: SynchronousMode = SynchronousMode(rawValue: environment("SWITCHBOARD_SYNCHRONOUS", "full").lowercased()) ?? .full

    // Hardening: HTTP
    @Option(help: "Threads that hash passwords, apart from the database's (env: SWITCHBOARD_PASSWORD_HASH_THREADS).")
    var passwordHashThreads: Int = environment("SWITCHBOARD_PASSWORD_HASH_THREADS", ServerConfiguration().passwordHashThreads)

    @Option(help: "Password hashes that may wait for a thread; past it register and login answer rate_limited (env: SWITCHBOARD_PASSWORD_HASH_QUEUE).")
    var passwordHashQueue: Int = environment("SWITCHBOARD_PASSWORD_HASH_QUEUE", ServerConfiguration().passwordHashQueue)

    @Option(help: "register and login attempts per minute from one client address (env: SWITCHBOARD_AUTH_ATTEMPTS_PER_MINUTE).")
    var authAttemptsPerMinute: Double = environment("SWITCHBOARD_AUTH_ATTEMPTS_PER_MINUTE", ServerConfiguration().authAttemptsPerMinutePerAddress)

    @Option(help: "register and login attempts per minute for one username (env: SWITCHBOARD_AUTH_ATTEMPTS_PER_MINUTE_PER_USER).")
    var authAttemptsPerMinutePerUser: Double = environment("SWITCHBOARD_AUTH_ATTEMPTS_PER_MINUTE_PER_USER", ServerConfiguration().authAttemptsPerMinutePerUsername)

    @Option(help: "Milliseconds a new connection has to send its first request's header (env: SWITCHBOARD_HEADER_TIMEOUT_MS).")
    var headerTimeoutMs: Int = environment("SWITCHBOARD_HEADER_TIMEOUT_MS", 10_000)

    @Option(help: "Milliseconds a request has from its header to the end of its body (env: SWITCHBOARD_BODY_TIMEOUT_MS).")
    var bodyTimeoutMs: Int = environment("SWITCHBOARD_BODY_TIMEOUT_MS", 30_000)

    @Option(help: "Milliseconds a keep-alive connection may wait idle for its next request (env: SWITCHBOARD_IDLE_TIMEOUT_MS).")
    var idleTimeoutMs: Int = environment("SWITCHBOARD_IDLE_TIMEOUT_MS", 60_000)

    @Option(help: "Open connections one client address may hold (env: SWITCHBOARD_MAX_CONNECTIONS_PER_ADDRESS).")
    var maxConnectionsPerAddress: Int = environment("SWITCHBOARD_MAX_CONNECTIONS_PER_ADDRESS", ServerConfiguration().maxConnectionsPerAddress)

    @Option(help: "Milliseconds a shutdown waits for connections to finish before closing them (env: SWITCHBOARD_SHUTDOWN_TIMEOUT_MS).")
    var shutdownTimeoutMs: Int = environment("SWITCHBOARD_SHUTDOWN_TIMEOUT_MS", 10_000)

    @Option(help: "Days a session token from register or login lives; 0: forever (env: SWITCHBOARD_SESSION_DAYS).")
    var sessionDays: Int = environment("SWITCHBOARD_SESSION_DAYS", 30)

    @Option(help: "API tokens one user may hold live; one more is refused until one is revoked (env: SWITCHBOARD_MAX_TOKENS_PER_USER).")
    var maxTokensPerUser: Int = environment("SWITCHBOARD_MAX_TOKENS_PER_USER", ServerConfiguration().maxTokensPerUser)

    @Option(help: "Long-polling sessions one user may hold; a new one ends the oldest (env: SWITCHBOARD_MAX_POLL_SESSIONS_PER_USER).")
    var maxPollSessionsPerUser: Int = environment("SWITCHBOARD_MAX_POLL_SESSIONS_PER_USER", ServerConfiguration().maxPollSessionsPerUser)

    @Option(help: "Bearer token that GET /metrics requires; without it /metrics is not served (env: SWITCHBOARD_METRICS_TOKEN).")
    var metricsToken: String = environment("SWITCHBOARD_METRICS_TOKEN", "")

    /// Every number from outside in range, so that none can overflow a conversion later.
    func validateHardeningHTTP() throws {
        let day = 86_400_000
        for (name, value) in [
            ("--typing-expiry-ms", typingExpiryMs), ("--ping-interval-ms", pingIntervalMs), ("--ping-timeout-ms", pingTimeoutMs),
            ("--header-timeout-ms", headerTimeoutMs), ("--body-timeout-ms", bodyTimeoutMs), ("--idle-timeout-ms", idleTimeoutMs),
            ("--shutdown-timeout-ms", shutdownTimeoutMs),
        ] where !(1...day).contains(value) {
            throw ValidationError("\(name) must be 1 to \(day) (a day), not \(value)")
        }
        for (name, value) in [("--messages-per-second", messagesPerSecond), ("--message-burst", messageBurst), ("--typing-per-second", typingPerSecond),
            ("--auth-attempts-per-minute", authAttemptsPerMinute), ("--auth-attempts-per-minute-per-user", authAttemptsPerMinutePerUser),
        ] where !(0.001...1_000_000).contains(value) {
            throw ValidationError("\(name) must be 0.001 to 1000000, not \(value)")
        }
        guard maxFrameBytes <= 1 << 30 else { throw ValidationError("--max-frame-bytes must be at most \(1 << 30) (1 GiB)") }
        guard maxContentLength <= 1 << 30 else { throw ValidationError("--max-content-length must be at most \(1 << 30)") }
        guard replayCap <= 1_000_000 else { throw ValidationError("--replay-cap must be at most 1000000") }
        guard (1...64).contains(passwordHashThreads) else { throw ValidationError("--password-hash-threads must be 1 to 64") }
        guard (0...100_000).contains(passwordHashQueue) else { throw ValidationError("--password-hash-queue must be 0 to 100000") }
        guard (1...1_000_000).contains(maxConnectionsPerAddress) else { throw ValidationError("--max-connections-per-address must be 1 to 1000000") }
        guard (0...36_500).contains(sessionDays) else { throw ValidationError("--session-days must be 0 (forever) to 36500") }
        guard (1...1_000_000).contains(maxTokensPerUser) else { throw ValidationError("--max-tokens-per-user must be 1 to 1000000") }
        guard (1...10_000).contains(maxPollSessionsPerUser) else { throw ValidationError("--max-poll-sessions-per-user must be 1 to 10000") }
    }

    /// Puts the hardening flags into the configuration.
    func applyHardeningHTTP(to configuration: inout ServerConfiguration) {
        configuration.passwordHashThreads = passwordHashThreads
        configuration.passwordHashQueue = passwordHashQueue
        configuration.authAttemptsPerMinutePerAddress = authAttemptsPerMinute
        configuration.authAttemptsPerMinutePerUsername = authAttemptsPerMinutePerUser
        configuration.headerTimeout = .milliseconds(headerTimeoutMs)
        configuration.bodyTimeout = .milliseconds(bodyTimeoutMs)
        configuration.idleTimeout = .milliseconds(idleTimeoutMs)
        configuration.maxConnectionsPerAddress = maxConnectionsPerAddress
        configuration.shutdownTimeout = .milliseconds(shutdownTimeoutMs)
        configuration.sessionLifetime = sessionDays == 0 ? nil : .seconds(sessionDays * 86_400)
        configuration.maxTokensPerUser = maxTokensPerUser
        configuration.maxPollSessionsPerUser = maxPollSessionsPerUser
        configuration.metricsToken = metricsToken.isEmpty ? nil : metricsToken
    }
    // Hardening: WebSocket
    @OptionGroup var webSocketLimits: WebSocketLimitOptions
    // WebSocket transport (issue 9)
    @OptionGroup var webSocketTransport: WebSocketTransportOptions
    // The agent in the server's process (issue 10).
    @Option(help: "Run the bots of this agent configuration in the server's process; bots given no token are created (env: SWITCHBOARD_AGENT_CONFIG; empty: none).")
    var agent: String = ProcessInfo.processInfo.environment["SWITCHBOARD_AGENT_CONFIG"] ?? ""

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0 to 65535") }
        guard (4...31).contains(bcryptCost) else { throw ValidationError("--bcrypt-cost must be 4 to 31") }
        guard maxContentLength > 0, maxFrameBytes > 0, messagesPerSecond > 0, messageBurst >= 1, typingPerSecond > 0, replayCap >= 0 else {
            throw ValidationError("limits and rates must be positive")
        }
        try validateHardeningHTTP()
    }

    func run() async throws {
        let logger = makeLogger()
        var configuration = ServerConfiguration()
        configuration.host = host
        configuration.port = port
        configuration.registration = registration
        configuration.limits.maxContentLength = maxContentLength
        configuration.limits.maxFrameBytes = maxFrameBytes
        configuration.limits.replayCap = replayCap
        configuration.messagesPerSecond = messagesPerSecond
        configuration.messageBurst = messageBurst
        configuration.typingPerSecond = typingPerSecond
        configuration.typingBurst = max(1, typingPerSecond)
        configuration.typingExpiry = .milliseconds(typingExpiryMs)
        configuration.pingInterval = .milliseconds(pingIntervalMs)
        configuration.pingTimeout = .milliseconds(pingTimeoutMs)
        configuration.bcryptCost = bcryptCost
        configuration.logFrames = debugsWebSocket
        applyHardeningHTTP(to: &configuration)
        // Hardening: WebSocket
        webSocketLimits.apply(to: &configuration)
        webSocketTransport.apply(to: &configuration)
        configuration.web = web == .on

        var storeConfiguration = SQLiteStore.Configuration()
        storeConfiguration.synchronous = synchronous.store
        if synchronous != .full {
            logger.warning("synchronous=\(synchronous.rawValue): acked messages may be lost on a power cut")
        }
        try await database.withStore(logger: logger, configuration: storeConfiguration) { store in
            logger.info("database opened", metadata: ["switchboard.database": "\(RedactedURL.string(database.database))"])
            // The agent (--agent) starts once the server listens.
            let inProcessAgent = try (agent.isEmpty ? nil : agent).map { try InProcessAgent(file: $0, store: store, host: host, logger: logger) }
            let server = ChatServer(configuration: configuration, store: store, logger: logger) { port in inProcessAgent?.serverListening(on: port) }
            let group = ServiceGroup(
                configuration: .init(
                    services: [.init(service: server)] + (inProcessAgent.map { [.init(service: $0)] } ?? []),
                    gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
            )
            try await group.run()
            logger.info("stopped; finishing writes")
        }
    }

    // Web
    @Option(help: "Serve the web page at /: on or off (env: SWITCHBOARD_WEB).")
    var web: Switch = Switch(rawValue: environment("SWITCHBOARD_WEB", "on").lowercased()) ?? .on
}

/// `--web on|off`.
enum Switch: String, ExpressibleByArgument, CaseIterable {
    case on, off
}
