import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import SwitchboardPostgres
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

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0 to 65535") }
        guard (4...31).contains(bcryptCost) else { throw ValidationError("--bcrypt-cost must be 4 to 31") }
        guard maxContentLength > 0, maxFrameBytes > 0, messagesPerSecond > 0, messageBurst >= 1, typingPerSecond > 0, replayCap >= 0 else {
            throw ValidationError("limits and rates must be positive")
        }
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

        var storeConfiguration = SQLiteStore.Configuration()
        storeConfiguration.synchronous = synchronous.store
        if synchronous != .full {
            logger.warning("synchronous=\(synchronous.rawValue): acked messages may be lost on a power cut")
        }
        try await database.withStore(logger: logger, configuration: storeConfiguration) { store in
            logger.info("database opened", metadata: ["switchboard.database": "\(PostgresStore.Configuration.redacted(database.database))"])
            let server = ChatServer(configuration: configuration, store: store, logger: logger)
            let group = ServiceGroup(
                configuration: .init(services: [.init(service: server)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
            )
            try await group.run()
            logger.info("stopped; finishing writes")
        }
    }
}
