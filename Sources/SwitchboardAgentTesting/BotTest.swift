import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import SwitchboardAgent
import SwitchboardClient
import SwitchboardProtocol
import SwitchboardServer
import SwitchboardStore
import SwitchboardTesting

/// A test of a bot in one line: a real server in the process, an agent with your plugins, a person
/// to talk to it, and a clock that moves when you say so.
///
/// ```swift
/// @Test func rolls() async throws {
///     try await BotTest.run(plugins: [DicePlugin()]) { test in
///         let reply = try await test.ask("!roll 2d6")
///         #expect(reply.hasPrefix("🎲"))
///     }
/// }
/// ```
///
/// The bot (`testbot`, a bot user) and the person (`tester`) share a room, ``room``; the agent keeps
/// its storage in a temporary file that ``restartAgent()`` keeps, so that persistence can be tested.
public struct BotTest: Sendable {
    /// The server.
    public let server: TestServer
    /// The clock of the agent's schedules.
    public let clock: TestClock
    /// The bot's user.
    public let bot: User
    /// The person talking to the bot.
    public let tester: TestUser
    /// The room of the bot and the tester.
    public let room: Room
    /// The agent's configuration.
    public let configuration: AgentConfiguration
    let running: RunningAgent

    /// The agent running now.
    public var agent: Agent { running.current }

    /// Runs `body` with a server, an agent with one bot running `plugins`, and a tester.
    ///
    /// - Parameters:
    ///   - plugins: the bot's plugins, in code.
    ///   - factories: plugins by name, for bots configured by name in `configure`.
    ///   - clock: the schedules' clock; it starts at the current time.
    ///   - configure: changes to the agent's configuration (its only bot is `bots[0]`).
    ///   - server: the server's configuration (say, a higher message rate for a test that sends hundreds).
    public static func run<Result: Sendable>(
        plugins: [any Plugin], factories: [PluginFactory] = [], clock: TestClock = TestClock(),
        configure: @Sendable (inout AgentConfiguration) -> Void = { _ in },
        server serverConfiguration: ServerConfiguration = TestServer.testConfiguration(),
        logger: Logger = Logger(label: "switchboard.bottest"),
        _ body: @Sendable (BotTest) async throws -> Result
    ) async throws -> Result {
        try await TestServer.withServer(configuration: serverConfiguration, logger: logger) { server in
            let (bot, token) = try await makeBotUser(server, named: "testbot")
            let tester = try await server.register("tester")
            let room = try await server.createRoom("test-room", token: tester.token, members: [bot.id])
            var configuration = AgentConfiguration(server: server.baseURL)
            configuration.storage = try temporaryFolder().appendingPathComponent("agent.db").path
            configuration.bots = [BotConfiguration(name: "testbot", token: .inline(token), plugins: plugins.map { .instance($0) })]
            configure(&configuration)
            let agentConfiguration = configuration
            let running = RunningAgent(configuration: agentConfiguration, factories: factories, clock: clock, logger: logger)
            try await running.start()
            do {
                let result = try await TestUser.with(server: server, auth: tester) { user in
                    // From the room's start: what the bot says before the tester has joined (a plugin's run
                    // speaking at once, while the machine is busy) is not missed.
                    try await user.client.subscribe(to: room.id, after: 0)
                    return try await body(BotTest(server: server, clock: clock, bot: bot, tester: user, room: room, configuration: agentConfiguration, running: running))
                }
                await running.stop()
                return result
            } catch {
                await running.stop()
                throw error
            }
        }
    }

    /// Makes a bot user (`isBot`) and a token for it, as `switchboard users add NAME --bot` does.
    public static func makeBotUser(_ server: TestServer, named name: String) async throws -> (User, String) {
        let store = try await TestDatabase.selected.openStore(server.databasePath, logger: Logger(label: "switchboard.bottest"))
        do {
            let (user, token) = try await Administration(store: store).addUser(username: name, password: nil, isBot: true)
            try await store.close()
            guard let token else { throw TestFailure("no token for the bot \(name)") }
            return (user, token.token)
        } catch {
            try? await store.close()
            throw error
        }
    }

    /// Says `text` in ``room`` (or `roomId`) as the tester.
    @discardableResult
    public func say(_ text: String, in roomId: String? = nil) async throws -> Message {
        try await tester.say(text, in: roomId ?? room.id)
    }

    /// Says `text` to the bot in their direct room.
    @discardableResult
    public func sayDirect(_ text: String) async throws -> Message {
        try await tester.sayDirect(text, to: bot.id)
    }

    /// The next message of the bot that the tester sees (in any followed room).
    public func reply(timeout: Duration = .seconds(10), fileID: String = #fileID, line: Int = #line) async throws -> Message {
        try await tester.nextMessage(from: bot.id, timeout: timeout, fileID: fileID, line: line)
    }

    /// Says `text` in ``room`` and returns the content of the bot's next message.
    public func ask(_ text: String, timeout: Duration = .seconds(10), fileID: String = #fileID, line: Int = #line) async throws -> String {
        try await say(text)
        return try await reply(timeout: timeout, fileID: fileID, line: line).content
    }

    /// Says `text` to the bot directly and returns the content of its next message.
    public func askDirect(_ text: String, timeout: Duration = .seconds(10), fileID: String = #fileID, line: Int = #line) async throws -> String {
        try await sayDirect(text)
        return try await reply(timeout: timeout, fileID: fileID, line: line).content
    }

    /// Moves the schedules' clock forward.
    public func advance(by interval: Duration) {
        clock.advance(by: interval)
    }

    /// Stops the agent and starts a new one with the same configuration, storage and clock, as a
    /// restart of the process would.
    public func restartAgent() async throws {
        await running.stop()
        try await running.start()
    }

    /// Stops the agent (for a test of what happens while it is down); ``startAgent()`` starts it again.
    public func stopAgent() async { await running.stop() }

    /// Starts the agent after ``stopAgent()``.
    public func startAgent() async throws { try await running.start() }

    /// Runs `body` with another person, registered now and a member of ``room``.
    public func withUser<Result: Sendable>(_ username: String, joinRoom: Bool = true, _ body: @Sendable (TestUser) async throws -> Result) async throws -> Result {
        let auth = try await server.register(username)
        if joinRoom {
            _ = try await server.request(.POST, "/api/rooms/\(room.id)/members", token: tester.token, json: UserIdRequest(userId: auth.user.id))
        }
        return try await TestUser.with(server: server, auth: auth, body)
    }
}

/// The agent of a ``BotTest``, which can be stopped and started again.
final class RunningAgent: Sendable {
    let configuration: AgentConfiguration
    let factories: [PluginFactory]
    let clock: TestClock
    let logger: Logger
    private let state = Mutex<(agent: Agent, group: ServiceGroup, task: Task<Void, any Error>)?>(nil)

    init(configuration: AgentConfiguration, factories: [PluginFactory], clock: TestClock, logger: Logger) {
        self.configuration = configuration
        self.factories = factories
        self.clock = clock
        self.logger = logger
    }

    var current: Agent {
        guard let agent = state.withLock({ $0?.agent }) else { preconditionFailure("the agent is stopped") }
        return agent
    }

    func start() async throws {
        let agent = Agent(configuration: configuration, plugins: factories, clock: clock, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [.init(service: agent)], gracefulShutdownSignals: [], logger: logger))
        let task = Task { try await group.run() }
        state.withLock { $0 = (agent, group, task) }
        guard await agent.waitUntilReady(bots: [configuration.bots[0].name], timeout: .seconds(30)) else {
            throw TestFailure("the test bot did not connect within 30 s")
        }
    }

    func stop() async {
        guard case let (_, group, task)? = state.withLock({ state in defer { state = nil }; return state }) else { return }
        await group.triggerGracefulShutdown()
        _ = await task.result
    }
}

/// A person in a ``BotTest``: a real client that talks and collects what it sees.
public struct TestUser: Sendable {
    /// The user.
    public let user: User
    /// Their token.
    public let token: String
    /// Their client.
    public let client: ChatClient
    let inbox: Inbox

    static func with<Result: Sendable>(server: TestServer, auth: AuthResponse, _ body: @Sendable (TestUser) async throws -> Result) async throws -> Result {
        try await ChatClient.withClient(
            configuration: ClientConfiguration(server: server.baseURL, credentials: .token(auth.token)), logger: Logger(label: "switchboard.testuser")
        ) { client in
            let inbox = Inbox()
            let messages = client.messages()
            let feed = Task {
                for await message in messages { await inbox.add(message) }
            }
            defer { feed.cancel() }
            return try await body(TestUser(user: auth.user, token: auth.token, client: client, inbox: inbox))
        }
    }

    /// Says `text` in a room.
    @discardableResult
    public func say(_ text: String, in roomId: String) async throws -> Message {
        try await client.send(text, to: roomId)
    }

    /// Says `text` to `userId` in their direct room (subscribing to it, to see the answers).
    @discardableResult
    public func sayDirect(_ text: String, to userId: String) async throws -> Message {
        let room = try await client.directRoom(with: userId)
        try await client.subscribe(to: room.id, after: room.lastSeq)
        return try await client.send(text, to: room.id)
    }

    /// The next message seen from `userId` (anyone when nil), optionally in one room.
    ///
    /// - Throws: ``TestFailure`` when none comes within `timeout`, naming the caller's line, what
    ///   was awaited and the messages seen meanwhile that did not match.
    public func nextMessage(
        from userId: String? = nil, in roomId: String? = nil, timeout: Duration = .seconds(10), fileID: String = #fileID, line: Int = #line
    ) async throws -> Message {
        let wanted = "message from \(userId ?? "anyone")\(roomId.map { " in room \($0)" } ?? "") for \(user.username) (\(fileID):\(line))"
        return try await inbox.next(timeout: timeout, wanted: wanted) { message in
            (userId == nil || message.userId == userId) && (roomId == nil || message.roomId == roomId)
        }
    }
}

/// Messages seen by a test user, taken in order by the matching waiter.
actor Inbox {
    private var messages: [Message] = []
    private var waiters: [Int: (match: @Sendable (Message) -> Bool, continuation: CheckedContinuation<Message, any Error>)] = [:]
    private var nextID = 0

    func add(_ message: Message) {
        if case let (id, waiter)? = waiters.sorted(by: { $0.key < $1.key }).first(where: { $0.value.match(message) }) {
            waiters[id] = nil
            waiter.continuation.resume(returning: message)
        } else {
            messages.append(message)
        }
    }

    func next(timeout: Duration, wanted: String, where match: @escaping @Sendable (Message) -> Bool) async throws -> Message {
        if let index = messages.firstIndex(where: match) { return messages.remove(at: index) }
        nextID += 1
        let id = nextID
        let timer = Task {
            try await Task.sleep(for: timeout)
            self.expire(id, wanted: wanted, after: timeout)
        }
        defer { timer.cancel() }
        return try await withCheckedThrowingContinuation { continuation in
            waiters[id] = (match, continuation)
        }
    }

    private func expire(_ id: Int, wanted: String, after timeout: Duration) {
        // What came instead tells a lost message from a slow one, or from one that went elsewhere.
        let seen = messages.suffix(5).map { "\($0.roomId)#\($0.seq) from \($0.userId): \($0.content.prefix(60))" }
        let failure = TestFailure(
            "no \(wanted) within \(timeout); \(messages.count) other messages seen and not taken\(seen.isEmpty ? "" : ", the last: " + seen.joined(separator: " | "))")
        waiters.removeValue(forKey: id)?.continuation.resume(throwing: failure)
    }
}

/// A new empty folder for a test's agent storage (the server's database may be a PostgreSQL URL, not a file).
private func temporaryFolder() throws -> URL {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-agent-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    return folder
}
