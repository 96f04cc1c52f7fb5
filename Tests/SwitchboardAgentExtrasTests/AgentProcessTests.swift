import Foundation
import Spawn
import SwitchboardAgentTesting
import SwitchboardProtocol
import SwitchboardTesting
import Synchronization
import Testing

/// The real `switchboard agent` process, driven by signals as an operator drives it.
@Suite("switchboard agent, the process", .timeLimit(.minutes(2)))
struct AgentProcessTests {
    @Test("SIGHUP adds, removes and reconfigures bots without dropping the others' connections; SIGTERM stops the agent gracefully")
    func signals() async throws {
        try await TestServer.withServer { server in
            let ana = try await server.register("ana")
            var tokens: [String: String] = [:]
            var userIds: [String: String] = [:]
            for name in ["alpha", "beta", "gamma", "delta"] {
                let (user, token) = try await BotTest.makeBotUser(server, named: name)
                (tokens[name], userIds[name]) = (token, user.id)
            }
            let ids = userIds
            let room = try await server.createRoom("lobby", token: ana.token, members: ids.values.sorted())
            let socket = try await server.connect(token: ana.token)
            _ = try await socket.join(room.id)

            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("agent-process-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: folder) }
            let file = folder.appendingPathComponent("agent.yml").path
            func write(_ bots: [(name: String, prefix: String)]) throws {
                var yaml = "server: \(server.baseURL)\nstorage: agent.db\nbots:\n"
                for bot in bots {
                    yaml += "  - {name: \(bot.name), token: \(tokens[bot.name]!), prefix: \"\(bot.prefix)\", plugins: [echo]}\n"
                }
                try yaml.write(toFile: file, atomically: true, encoding: .utf8)
            }
            try write([("alpha", "!"), ("beta", "!"), ("delta", "!")])

            let agent = try AgentProcess(["agent", "--config", file, "--health-port", "0"])
            let port = try await agent.healthPort()
            try await agent.showingOutputOnFailure {
            func offline(_ name: String) -> @Sendable (TestFrame) -> Bool {
                { $0.type == "presence" && $0.userId == ids[name] && $0.data?["status"]?.stringValue == "offline" }
            }
            // A bot that subscribed to the room (the server tells the others with `join`) hears what is said there.
            func joined(_ name: String) -> @Sendable (TestFrame) -> Bool {
                { $0.type == "join" && $0.userId == ids[name] }
            }
            for name in ["alpha", "beta", "delta"] { _ = try await socket.next(timeout: .seconds(30), where: joined(name)) }
            // Who answers a command, by name: the bots reply to it.
            func answers(to text: String, from expected: Set<String>) async throws {
                let asked = try await socket.sendMessage(text, roomId: room.id)
                var answered: Set<String> = []
                while answered != expected {
                    let reply = try await socket.next(timeout: .seconds(30)) {
                        $0.type == "message" && $0.data?["replyTo"]?.stringValue == asked.id
                    }
                    let name = try #require(ids.first { $0.value == reply.userId }?.key)
                    #expect(expected.contains(name), "\(name) answered \(text)")
                    answered.insert(name)
                }
            }
            try await answers(to: "!ping", from: ["alpha", "beta", "delta"])
            let betaHandled = try await metric(port, #"switchboard_agent_events_handled_total{bot="beta"}"#)
            #expect(betaHandled >= 1)

            // alpha removed, gamma added, delta reconfigured (another prefix), beta as it was.
            try write([("beta", "!"), ("gamma", "!"), ("delta", "?")])
            agent.send(SIGHUP)
            _ = try await socket.next(timeout: .seconds(30), where: offline("alpha"))
            _ = try await socket.next(timeout: .seconds(30), where: joined("gamma"))
            try await answers(to: "!ping", from: ["beta", "gamma"])
            // delta restarted (its new connection may open before the old one closes, so the server
            // need not say offline or join); it resumes from the position it stored, so it hears this.
            try await answers(to: "?ping", from: ["delta"])
            #expect(socket.pending.first(where: offline("beta")) == nil, "beta's connection was not dropped")
            let betaOpened = agent.output.split(separator: "\n").filter { $0.contains("switchboard.bot=beta ") && $0.contains("the WebSocket is open") }
            #expect(betaOpened.count == 1, "beta connected once: \(betaOpened)")
            // Its runner is the same: what it handled before the reload is still counted.
            #expect(try await metric(port, #"switchboard_agent_events_handled_total{bot="beta"}"#) > betaHandled)
            let text = try await http(.GET, port: port, "/metrics").text
            #expect(!text.contains(#"bot="alpha""#), "a removed bot leaves /metrics")
            #expect(sample(text, #"switchboard_agent_handler_duration_seconds_count{bot="beta",plugin="echo"}"#).map { $0 >= 2 } == true)
            #expect(sample(text, #"switchboard_agent_handler_errors_total{bot="gamma",plugin="echo"}"#) == 0)
            // delta's series started again with it, and count its ?ping.
            #expect(sample(text, #"switchboard_agent_handler_duration_seconds_count{bot="delta",plugin="echo"}"#).map { $0 >= 1 } == true)
            #expect(text.contains(#"switchboard_agent_connection_state{bot="gamma",state="connected"} 1"#))

            // A file with a mistake changes nothing: the error is logged and the bots go on.
            try "bots: [{name: beta, plugins: [nope]}]\n".write(toFile: file, atomically: true, encoding: .utf8)
            agent.send(SIGHUP)
            try await agent.waitForOutput("the configuration was not reloaded")
            try await answers(to: "!ping", from: ["beta", "gamma"])

            let stopping = ContinuousClock.now
            agent.send(SIGTERM)
            #expect(try await agent.exitStatus(timeout: .seconds(20)) == .exited(0))
            #expect(ContinuousClock.now - stopping < .seconds(20))
            for name in ["beta", "gamma", "delta"] { _ = try await socket.next(timeout: .seconds(10), where: offline(name)) }
            #expect(agent.output.contains("agent stopped"))
            }
            await socket.close()
        }
    }

    /// The value of one series of the agent's `/metrics`.
    private func metric(_ port: Int, _ series: String) async throws -> Double {
        let text = try await http(.GET, port: port, "/metrics").text
        return try #require(sample(text, series), "no \(series) in:\n\(text)")
    }
}

/// The built `switchboard` binary as a child process (not Foundation's `Process`, which crashes
/// now and then on Linux), with what it prints (its log) collected as it comes.
final class AgentProcess: Sendable {
    /// Next to the test bundle: `swift build --build-tests` builds every product of the package.
    static let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("switchboard").path

    private let process: ChildProcess
    private let printed = Printed()

    /// Shared with the reading thread.
    private final class Printed: Sendable {
        let text = Mutex("")
    }

    init(_ arguments: [String]) throws {
        guard FileManager.default.isExecutableFile(atPath: Self.binary) else {
            throw TestFailure("no switchboard binary at \(Self.binary): build the package (swift build --build-tests) before testing")
        }
        var environment = ProcessInfo.processInfo.environment
        environment["LOG_LEVEL"] = "info"
        let output = Pipe()
        let devNull = open("/dev/null", O_RDONLY)
        defer { close(devNull) }
        process = try ChildProcess.spawn(
            Self.binary, arguments: arguments, environment: environment, standardInput: devNull,
            standardOutput: output.fileHandleForWriting.fileDescriptor, standardError: output.fileHandleForWriting.fileDescriptor)
        try output.fileHandleForWriting.close()
        // A thread with blocking reads: Foundation's readabilityHandler is not dependable on Linux.
        let reading = output.fileHandleForReading
        Thread { [printed] in
            while true {
                let data = reading.availableData
                if data.isEmpty { return }
                printed.text.withLock { $0 += String(decoding: data, as: UTF8.self) }
            }
        }.start()
    }

    deinit { process.send(SIGKILL) }

    /// Everything it printed so far.
    var output: String { printed.text.withLock { $0 } }

    func send(_ signal: Int32) { process.send(signal) }

    /// Waits until it printed `text` (after whatever it printed before).
    func waitForOutput(_ text: String, timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        while !output.contains(text) {
            guard process.isRunning else { throw TestFailure("the agent ended (\(String(describing: process.exitStatus()))) before printing \"\(text)\":\n\(output)") }
            guard ContinuousClock.now < deadline else { throw TestFailure("the agent did not print \"\(text)\" within \(timeout):\n\(output)") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// The port of its health listener (`--health-port 0`), from its log.
    func healthPort() async throws -> Int {
        try await waitForOutput("agent health listener ready")
        let line = output.split(separator: "\n").first { $0.contains("agent health listener ready") } ?? ""
        guard let address = line.split(separator: " ").first(where: { $0.hasPrefix("agent.address=") }),
            let port = address.split(separator: ":").last.flatMap({ Int($0) })
        else { throw TestFailure("no port in: \(line)") }
        return port
    }

    /// Runs `body`; when it throws, what the agent printed is attached to the error.
    func showingOutputOnFailure(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch {
            throw TestFailure("\(error)\nthe agent printed:\n\(output)")
        }
    }

    /// Waits for it to end.
    func exitStatus(timeout: Duration) async throws -> ChildProcess.Termination {
        try await withTimeout(timeout, onTimeout: { [process] in process.send(SIGKILL) }) { [process] in
            await process.termination()
        }
    }
}
