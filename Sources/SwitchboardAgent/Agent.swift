import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import SwitchboardClient
import SwitchboardProtocol
import UnixSignals

/// One process, several bots: each a user of the server with its own connection and plugins.
///
/// The agent is a `Service`: run it in a `ServiceGroup`, which stops it gracefully on SIGINT and
/// SIGTERM. With a configuration file, SIGHUP reads the file again and adds, removes and
/// restarts only the bots that changed; the others keep their connections.
///
/// ```swift
/// let configuration = try AgentConfiguration.load(file: "agent.yml")
/// let agent = Agent(configuration: configuration, plugins: [PluginFactory("hello") { Hello() }], logger: logger)
/// try await ServiceGroup(services: [agent], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger).run()
/// ```
///
/// Supervision: a handler that throws is logged with the bot, the plugin and the event, and the
/// bot goes on; a plugin's ``Plugin/run(context:)`` that throws is restarted with backoff; a bot
/// whose connection fails for good (a revoked token) is started again with backoff, alone.
public final class Agent: Service, Sendable {
    /// Gives a token to a bot whose configuration has none (``TokenSource/managed``): the
    /// server that runs the agent in its process makes one.
    public typealias TokenProvider = @Sendable (BotConfiguration) async throws -> String

    let factories: [PluginFactory]
    let clock: any AgentClock
    let logger: Logger
    let configurationFile: String?
    let tokenProvider: TokenProvider?
    let configuration: Mutex<AgentConfiguration>
    let runners = Mutex<[String: BotRunner]>([:])
    let reloads: AsyncStream<AgentConfiguration>
    let reloadContinuation: AsyncStream<AgentConfiguration>.Continuation
    let storeBox = Mutex<AgentStore?>(nil)
    let started = Signal()
    /// Handlers that run to their end through a bot's stop; cancelled when the agent's run is
    /// (graceful shutdown took too long).
    let handlers = UninterruptedWork()
    let metrics = AgentMetrics()

    /// How long a graceful shutdown (SIGTERM, SIGINT) may take before the agent is cancelled,
    /// handlers in progress included: ``main(configurationFile:plugins:logger:)`` and
    /// `switchboard agent` give it to their service group.
    public static let maximumGracefulShutdownDuration: Duration = .seconds(30)

    /// An agent for `configuration`, knowing the plugins `plugins` by name.
    ///
    /// - Parameters:
    ///   - configurationFile: the file `configuration` was read from; SIGHUP and ``reload()`` read it again.
    ///   - clock: the time schedules run on; a test clock in tests.
    ///   - tokenProvider: makes tokens for bots configured without one.
    public init(
        configuration: AgentConfiguration, plugins: [PluginFactory] = [], configurationFile: String? = nil,
        clock: any AgentClock = SystemClock(), tokenProvider: TokenProvider? = nil, logger: Logger
    ) {
        self.configuration = Mutex(configuration)
        self.factories = plugins
        self.configurationFile = configurationFile
        self.clock = clock
        self.tokenProvider = tokenProvider
        var logger = logger
        logger.logLevel = min(logger.logLevel, configuration.logLevel)
        self.logger = logger
        (reloads, reloadContinuation) = AsyncStream.makeStream(of: AgentConfiguration.self, bufferingPolicy: .unbounded)
    }

    // MARK: Checking

    /// Every problem of `configuration` with these plugins, without connecting: unknown plugins,
    /// plugin configurations that do not decode (naming bot, plugin and field), unreadable tokens.
    public static func check(_ configuration: AgentConfiguration, plugins: [PluginFactory], tokensAreManaged: Bool = false) -> [ConfigurationError] {
        var errors: [ConfigurationError] = []
        if configuration.bots.isEmpty {
            errors.append(ConfigurationError(code: .invalid, "bots: none configured; add at least one"))
        }
        for bot in configuration.bots {
            do { _ = try prepare(bot, factories: plugins) } catch { errors += error.errors }
            if let problem = bot.talkRate.problem { errors.append(ConfigurationError(code: .invalid, "bot \(bot.name): \(problem)")) }
            if case .managed = bot.token, tokensAreManaged { continue }
            do { _ = try bot.token.resolve() } catch { errors.append(ConfigurationError(code: .token, "bot \(bot.name): \(error.message)")) }
        }
        return errors
    }

    /// Makes a bot's plugins, or every error found on the way.
    static func prepare(_ bot: BotConfiguration, factories: [PluginFactory]) throws(ConfigurationErrors) -> [NamedPlugin] {
        var errors: [ConfigurationError] = []
        var plugins: [NamedPlugin] = []
        var names: Set<String> = []
        for entry in bot.plugins {
            if !names.insert(entry.name).inserted {
                errors.append(ConfigurationError(code: .invalid, "bot \(bot.name): the plugin \(entry.name) is listed twice; give each a different `name:`"))
            }
            switch entry.source {
            case .instance(let plugin):
                plugins.append(NamedPlugin(name: entry.name, plugin: plugin))
            case .configured(let yaml):
                guard let factory = factories.first(where: { $0.name == entry.factory }) else {
                    let known = factories.map(\.name).sorted().joined(separator: ", ")
                    errors.append(ConfigurationError(code: .unknownPlugin, "bot \(bot.name): unknown plugin \(entry.factory); the plugins are \(known)"))
                    continue
                }
                if yaml != nil, !factory.takesConfiguration {
                    errors.append(ConfigurationError(code: .invalid, "bot \(bot.name), plugin \(entry.name): takes no config; remove it"))
                    continue
                }
                do {
                    plugins.append(NamedPlugin(name: entry.name, plugin: try factory.make(ConfigurationSource(yaml: yaml, path: "bot \(bot.name), plugin \(entry.name), config"))))
                } catch let error as ConfigurationError {
                    errors.append(error)
                } catch {
                    errors.append(ConfigurationError(code: .invalid, "bot \(bot.name), plugin \(entry.name): \(error)", cause: error))
                }
            }
        }
        if !errors.isEmpty { throw ConfigurationErrors(errors) }
        return plugins
    }

    // MARK: Running

    /// Runs every bot until graceful shutdown or cancellation.
    ///
    /// - Throws: ``ConfigurationErrors`` when the configuration has problems (nothing starts then),
    ///   ``ConfigurationError`` when the storage cannot be opened.
    public func run() async throws {
        let configuration = self.configuration.withLock { $0 }
        let errors = Self.check(configuration, plugins: factories, tokensAreManaged: tokenProvider != nil)
        guard errors.isEmpty else { throw ConfigurationErrors(errors) }
        let store = try await AgentStore.open(path: configuration.storage, logger: logger)
        storeBox.withLock { $0 = store }
        logger.info("agent starting", metadata: ["switchboard.bots": "\(configuration.bots.count)", "switchboard.storage": "\(configuration.storage)"])
        await withTaskCancellationHandler {
            await runUntilShutdown(configuration, store: store)
        } onCancel: {
            self.handlers.cancelAll()
        }
        await store.close()
        logger.info("agent stopped")
    }

    private func runUntilShutdown(_ configuration: AgentConfiguration, store: AgentStore) async {
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                self.apply(configuration, store: store, group: &group)
                self.started.fire()
                if self.configurationFile != nil {
                    group.addTask { await self.reloadOnHangUp() }
                }
                for await next in self.reloads {
                    self.apply(next, store: store, group: &group)
                }
                for runner in self.runners.withLock({ Array($0.values) }) { runner.stop.fire() }
                group.cancelAll()
            }
        } onGracefulShutdown: {
            self.reloadContinuation.finish()
        }
    }

    /// Starts the bots that are new or changed, stops those that are gone or changed.
    private func apply(_ next: AgentConfiguration, store: AgentStore, group: inout DiscardingTaskGroup) {
        let environment = BotEnvironment(
            server: next.server, store: store, clock: clock, timeZone: TimeZone(identifier: next.timeZone) ?? TimeZone(identifier: "UTC")!,
            admins: next.admins, tokenProvider: tokenProvider, metrics: metrics, handlers: handlers, logger: logger)
        let (stopped, started) = runners.withLock { runners -> ([BotRunner], [BotRunner]) in
            var stopped: [BotRunner] = []
            var started: [BotRunner] = []
            let wanted = Dictionary(next.bots.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
            for (name, runner) in runners where wanted[name] == nil || !runner.isSame(wanted[name]!, environment) {
                stopped.append(runner)
                runners[name] = nil
                // Its series leave /metrics; a bot that restarts starts them again, with its new plugins.
                metrics.remove(bot: name)
            }
            for bot in next.bots where runners[bot.name] == nil {
                guard let plugins = try? Self.prepare(bot, factories: factories) else { continue }
                let runner = BotRunner(configuration: bot, plugins: plugins, environment: environment)
                runners[bot.name] = runner
                started.append(runner)
            }
            return (stopped, started)
        }
        configuration.withLock { $0 = next }
        for runner in stopped {
            logger.info("stopping a bot", metadata: ["switchboard.bot": "\(runner.configuration.name)"])
            runner.stop.fire()
        }
        for runner in started {
            group.addTask { await runner.run() }
        }
    }

    private func reloadOnHangUp() async {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        for await _ in signals {
            logger.info("SIGHUP: reloading the configuration")
            do { try await reload() } catch { logger.error("the configuration was not reloaded:\n\(error)") }
        }
    }

    /// Reads the configuration file again and applies it (as SIGHUP does).
    ///
    /// - Throws: ``ConfigurationErrors`` when the new configuration has problems; the running one stays.
    public func reload() async throws {
        guard let configurationFile else {
            throw ConfigurationErrors([ConfigurationError(code: .invalid, "the agent was not started from a file: use reload(to:)")])
        }
        try await reload(to: try AgentConfiguration.load(file: configurationFile))
    }

    /// Applies a new configuration: bots added, removed or changed start or stop; the others keep running.
    ///
    /// - Throws: ``ConfigurationErrors`` when it has problems; the running one stays.
    public func reload(to next: AgentConfiguration) async throws {
        let errors = Self.check(next, plugins: factories, tokensAreManaged: tokenProvider != nil)
        guard errors.isEmpty else { throw ConfigurationErrors(errors) }
        reloadContinuation.yield(next)
    }

    // MARK: Observing

    /// Each running bot's figures, by name.
    public func statistics() -> [String: BotSnapshot] {
        runners.withLock { runners in runners.mapValues(\.statistics.snapshot) }
    }

    /// The names of the bots running now.
    public var botNames: [String] { runners.withLock { $0.keys.sorted() } }

    /// Waits until every bot (or those named) has connected and follows its rooms (or `timeout` passed); true when they all do.
    @discardableResult
    public func waitUntilReady(bots names: [String]? = nil, timeout: Duration = .seconds(30)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        await started.waitOrTimeout(until: deadline)
        let chosen = runners.withLock { runners in runners.filter { names?.contains($0.key) ?? true }.map(\.value) }
        for runner in chosen {
            await runner.ready.waitOrTimeout(until: deadline)
        }
        return started.hasFired && chosen.allSatisfy { $0.ready.hasFired }
    }

    /// The user of a running bot, once it connected.
    public func user(ofBot name: String) -> User? {
        runners.withLock { $0[name] }?.runtime.withLock { $0?.user }
    }
}

/// What every bot of an agent shares.
struct BotEnvironment: Sendable {
    var server: String
    var store: AgentStore
    var clock: any AgentClock
    var timeZone: TimeZone
    var admins: [String]
    var tokenProvider: Agent.TokenProvider?
    var metrics: AgentMetrics
    var handlers: UninterruptedWork
    var logger: Logger
}

/// Keeps one bot running: connects, follows its rooms, dispatches, and starts again with backoff
/// when its connection fails for good.
final class BotRunner: Sendable {
    let configuration: BotConfiguration
    let plugins: [NamedPlugin]
    let environment: BotEnvironment
    let stop = Signal()
    let ready = Signal()
    let statistics: BotStatistics
    let runtime = Mutex<BotRuntime?>(nil)
    let logger: Logger

    init(configuration: BotConfiguration, plugins: [NamedPlugin], environment: BotEnvironment) {
        self.configuration = configuration
        self.plugins = plugins
        self.environment = environment
        self.statistics = BotStatistics(bot: configuration.name, plugins: plugins.map(\.name), metrics: environment.metrics)
        var logger = environment.logger
        logger[metadataKey: "switchboard.bot"] = "\(configuration.name)"
        self.logger = logger
    }

    /// Whether `other` would run the same bot (so reloading leaves this one alone).
    func isSame(_ other: BotConfiguration, _ environment: BotEnvironment) -> Bool {
        return configuration.fingerprint == other.fingerprint && environment.server == self.environment.server && environment.admins == self.environment.admins
            && environment.timeZone == self.environment.timeZone
    }

    func run() async {
        var backoff = RestartBackoff()
        while !stop.hasFired, !Task.isCancelled {
            let start = ContinuousClock.now
            do {
                try await session()
                if stop.hasFired || Task.isCancelled { return }
                throw ClientError(.connectionLost, "the connection ended")
            } catch {
                if stop.hasFired || Task.isCancelled { return }
                let delay = backoff.failed(after: ContinuousClock.now - start)
                logger.error("the bot stopped; starting it again in \(delay): \(error)")
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { try? await Task.sleep(for: delay) }
                    group.addTask { await self.stop.wait() }
                    await group.next()
                    group.cancelAll()
                }
            }
        }
    }

    /// One connection, from login to its end.
    private func session() async throws {
        let token: String
        if case .managed = configuration.token, let provider = environment.tokenProvider {
            token = try await provider(configuration)
        } else {
            token = try configuration.token.resolve()
        }
        var clientConfiguration = ClientConfiguration(server: environment.server, credentials: .token(token))
        clientConfiguration.positions = BotPositions(store: environment.store, bot: configuration.name)
        // Next to the storage: what the bot queued (a bridge's messages) is sent after a restart.
        if environment.store.path != ":memory:" { clientConfiguration.outbox.file = "\(environment.store.path)-\(configuration.name).outbox" }
        try await ChatClient.withClient(configuration: clientConfiguration, logger: logger) { client in
            statistics.client.withLock { $0 = client }
            // With `rooms: all` the client follows every room, those that appear later included.
            let events = configuration.rooms.all ? client.followAllRooms() : client.events()
            let user = try await client.me()
            let runtime = BotRuntime(
                name: configuration.name, user: user, client: client, logger: logger, store: environment.store, clock: environment.clock,
                timeZone: environment.timeZone, configuration: configuration, admins: environment.admins, plugins: plugins, statistics: statistics)
            self.runtime.withLock { $0 = runtime }
            logger.info("bot connected", metadata: ["switchboard.user": "\(user.username)"])
            let ended = Signal()
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    await self.stop.wait()
                    ended.fire()
                }
                for entry in plugins {
                    let context = runtime.context(entry.name)
                    await runtime.invoke(entry.name, "setUp", context) { try await entry.plugin.setUp(context: context) }
                }
                group.addTask {
                    for await event in events {
                        await self.environment.handlers.run { await runtime.handle(event) }
                        if self.stop.hasFired { break }
                    }
                    ended.fire()
                }
                await self.followRooms(runtime)
                group.addTask {
                    await runtime.scheduler.run(logger: self.logger) { plugin, job in
                        guard let entry = runtime.plugins.withLock({ $0.first { $0.name == plugin } }) else { return }
                        // As events: a schedule that fired is handled to the end even when the bot stops.
                        await self.environment.handlers.run {
                            await runtime.deliver(.schedule(job), roomId: nil, only: entry) { plugin, context in try await plugin.onSchedule(job, context: context) }
                        }
                    }
                }
                self.ready.fire()
                for entry in plugins {
                    group.addTask { await runtime.supervise(entry) }
                }
                await ended.wait()
                group.cancelAll()
            }
            self.runtime.withLock { $0 = nil }
        }
    }

    /// Subscribes to the rooms the configuration asks for.
    private func followRooms(_ runtime: BotRuntime) async {
        let selection = configuration.rooms
        let mine: [RoomSummary]
        do {
            mine = try await runtime.client.rooms()
        } catch {
            logger.warning("cannot list the bot's rooms: \(error)")
            return
        }
        var wanted: [(id: String, after: Int?)] = []
        if selection.all { wanted += mine.map { ($0.room.id, $0.room.lastSeq) } }
        for name in selection.rooms {
            if let found = mine.first(where: { $0.room.id == name || $0.room.name.lowercased() == name.lowercased() }) {
                wanted.append((found.room.id, found.room.lastSeq))
            } else {
                wanted.append((name, nil))
            }
        }
        for name in selection.publicRooms {
            do {
                if let room = try await runtime.client.publicRooms(matching: name).first(where: { $0.name.lowercased() == name.lowercased() }) {
                    wanted.append((room.id, room.lastSeq))
                } else {
                    logger.warning("no public room named \(name)")
                }
            } catch {
                logger.warning("cannot look up the public room \(name): \(error)")
            }
        }
        var seen: Set<String> = []
        for (id, after) in wanted where seen.insert(id).inserted {
            await runtime.follow(id, after: after)
        }
    }
}

extension Signal {
    /// Returns when fired, or at `deadline`.
    func waitOrTimeout(until deadline: ContinuousClock.Instant) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.wait() }
            group.addTask { try? await Task.sleep(until: deadline) }
            await group.next()
            group.cancelAll()
        }
    }
}
