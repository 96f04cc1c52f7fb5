import ArgumentParser
import DiceBot
import EchoBot
import IRCBridge
import Foundation
import KarmaBot
import PostgresArchive
import Logging
import RemindBot
import ServiceLifecycle
import SwitchboardAgent
import SwitchboardServer
import SwitchboardStore
import WelcomeBot

/// The plugins a configuration may name.
let bundledPlugins: [PluginFactory] = [
    EchoPlugin.factory, DicePlugin.factory, RemindPlugin.factory, WelcomePlugin.factory, KarmaPlugin.factory,
    ExecPlugin.factory, WebhooksPlugin.factory, IRCBridgePlugin.factory, PostgresArchivePlugin.factory,
]

struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Run bots: several bot users, each with plugins, in one process.",
        discussion: """
            switchboard agent --config agent.yml          # run; SIGHUP reloads the file, SIGINT/SIGTERM stop
            switchboard agent --config agent.yml --check  # check the file and the tokens without connecting
            Plugins: \(bundledPlugins.map(\.name).joined(separator: ", ")).
            """
    )

    @Option(help: "The agent's YAML configuration (env: SWITCHBOARD_AGENT).")
    var config: String = ProcessInfo.processInfo.environment["SWITCHBOARD_AGENT"] ?? "agent.yml"

    @Flag(help: "Check the configuration (plugins, their settings, tokens) without connecting; print every problem.")
    var check = false

    @Option(help: "Serve GET /healthz and Prometheus GET /metrics of the bots on this port of 127.0.0.1 (env: SWITCHBOARD_AGENT_HEALTH_PORT).")
    var healthPort: Int?

    func run() async throws {
        let configuration = try loadAgentConfiguration(config, tokensAreManaged: false)
        if check {
            print("\(config): ok, \(configuration.bots.count) bot\(configuration.bots.count == 1 ? "" : "s") (\(configuration.bots.map(\.name).joined(separator: ", ")))")
            return
        }
        var logger = makeLogger(label: "switchboard.agent")
        if ProcessInfo.processInfo.environment["LOG_LEVEL"] == nil { logger.logLevel = configuration.logLevel }
        let agent = Agent(configuration: configuration, plugins: bundledPlugins, configurationFile: config, logger: logger)
        let health = (healthPort ?? ProcessInfo.processInfo.environment["SWITCHBOARD_AGENT_HEALTH_PORT"].flatMap { Int($0) }).map { port in
            HealthListener(port: port, agent: agent, logger: logger)
        }
        var groupConfiguration = ServiceGroupConfiguration(
            services: [.init(service: agent)] + (health.map { [.init(service: $0)] } ?? []),
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger
        )
        groupConfiguration.maximumGracefulShutdownDuration = Agent.maximumGracefulShutdownDuration
        try await ServiceGroup(configuration: groupConfiguration).run()
    }
}

/// Reads and checks an agent configuration; every problem is printed before failing.
func loadAgentConfiguration(_ file: String, tokensAreManaged: Bool) throws -> AgentConfiguration {
    let configuration: AgentConfiguration
    do {
        configuration = try AgentConfiguration.load(file: file)
    } catch {
        throw Failure(description: "\(file):\n\(error)")
    }
    let errors = Agent.check(configuration, plugins: bundledPlugins, tokensAreManaged: tokensAreManaged)
    guard errors.isEmpty else { throw Failure(description: "\(file):\n\(ConfigurationErrors(errors))") }
    return configuration
}

/// The agent inside `switchboard serve --agent`: it starts once the server listens, talks to it over
/// loopback, and makes the bot users (and their tokens) that the configuration gives no token.
final class InProcessAgent: Service, Sendable {
    let file: String
    let configuration: AgentConfiguration
    let store: any ChatStore
    let host: String
    let logger: Logger
    private let ports: AsyncStream<Int>
    private let portContinuation: AsyncStream<Int>.Continuation

    init(file: String, store: any ChatStore, host: String, logger: Logger) throws {
        self.file = file
        self.configuration = try loadAgentConfiguration(file, tokensAreManaged: true)
        self.store = store
        self.host = host
        self.logger = logger
        (ports, portContinuation) = AsyncStream.makeStream(of: Int.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Called by the server once it listens.
    func serverListening(on port: Int) {
        portContinuation.yield(port)
        portContinuation.finish()
    }

    func run() async throws {
        // Cancelled (nil) when the server stops before it listens.
        guard let port = await cancelWhenGracefulShutdown({ await self.ports.first { _ in true } }) ?? nil else { return }
        let loopback = host == "0.0.0.0" || host == "::" ? "127.0.0.1" : host
        var configuration = self.configuration
        configuration.server = "http://\(loopback.contains(":") ? "[\(loopback)]" : loopback):\(port)"
        let agent = Agent(
            configuration: configuration, plugins: bundledPlugins, configurationFile: nil, tokenProvider: makeToken, logger: logger)
        let bots = configuration.bots.map(\.name).joined(separator: ", ")
        logger.notice("""
            bots running in the server: \(bots). Talk to them: switchboard chat --user YOU --register, \
            then /dm \(configuration.bots.first?.name ?? "BOT") and say help (or !help in a room with them)
            """)
        try await agent.run()
    }

    /// A fresh token for a managed bot, creating the bot user when missing. The tokens this made
    /// before are revoked, so that they do not pile up.
    @Sendable func makeToken(for bot: BotConfiguration) async throws -> String {
        let admin = Administration(store: store)
        let tokenName = "agent (serve --agent)"
        let user: User
        do {
            user = try await admin.user(named: bot.name)
        } catch {
            let (created, token) = try await admin.addUser(username: bot.name, password: nil, isBot: true)
            logger.info("created the bot user \(created.username)")
            if let token {
                try? await admin.revokeToken(id: token.id)
            }
            return try await admin.issueToken(userId: created.id, name: tokenName).token
        }
        guard user.isBot else {
            throw Failure(description: "\(bot.name) is a person's account, not a bot: rename the bot in \(file) or give it a token")
        }
        for old in try await admin.tokens(userId: user.id) where old.name == tokenName && old.revokedAt == nil {
            try? await admin.revokeToken(id: old.id)
        }
        return try await admin.issueToken(userId: user.id, name: tokenName).token
    }
}
