import Foundation
import SwitchboardClient
import SwitchboardProtocol
import SwitchboardAgentTesting
import SwitchboardTesting
import Testing

@testable import SwitchboardAgent

#if canImport(Glibc)
import Glibc
#endif

/// Exec plugins with real programs: the Python example bot in an agent against a real server, and
/// small shell programs for the protocol's failures.
@Suite("Exec supervisor with real programs", .timeLimit(.minutes(2)))
struct ExecProcessTests {
    @Test("the Python example bot, as an exec plugin of the agent, replies in a room; killed, it is started again with backoff")
    func pythonBotRepliesAndComesBack() async throws {
        let recorder = LogRecorder()
        var configuration = ExecConfiguration(command: ["python3", pythonExampleBot])
        configuration.restartDelay = 0.2
        let plugin = ExecPlugin(configuration: configuration)
        try await BotTest.run(plugins: [plugin], logger: recorder.logger("agent")) { test in
            let ping = try await test.say("!ping")
            let pong = try await test.reply()
            #expect(pong.content == "pong")
            #expect(pong.replyTo == ping.id)
            try await eventually("the bot's 👍 on the ping") {
                try await test.tester.client.history(in: test.room.id).messages.first { $0.id == ping.id }?.reactions["👍"] == 1
            }
            try await recorder.waitFor("ready as testbot")  // the program's standard error reaches the log

            let first = try #require(plugin.supervisor.status.processId)
            kill(first, SIGKILL)
            try await recorder.waitFor("was killed by signal 9; starting it again in 0.2 seconds")
            try await eventually("a second program that answered the hello") {
                plugin.supervisor.status.starts == 2 && plugin.supervisor.status.greeted
            }
            let second = try #require(plugin.supervisor.status.processId)
            #expect(second != first)
            #expect(try await test.ask("!about") == "python-example: pid \(second), exec protocol 1")
            #expect(try await test.askDirect("echo hello there") == "hello there")

            // A second quick death waits twice as long: the backoff grows.
            kill(second, SIGKILL)
            try await recorder.waitFor("starting it again in 0.4")
        }
    }

    @Test("the exec plugin is configured by name from YAML, and a bad configuration is named")
    func configuredByName() async throws {
        var configuration = AgentConfiguration()
        configuration.bots = [
            BotConfiguration(name: "py", token: .inline("t"), plugins: [.named("exec", configuration: "command: [python3, bot.py]\nqueueLimit: 8")]),
            BotConfiguration(name: "bad", token: .inline("t"), plugins: [.named("exec", configuration: "command: []")]),
        ]
        let errors = Agent.check(configuration, plugins: [ExecPlugin.factory])
        #expect(errors.count == 1)
        #expect(errors.first?.message.contains("bot bad") == true)
    }

    @Test("a program that speaks another version is stopped with both versions named")
    func versionMismatch() async throws {
        let recorder = LogRecorder()
        var configuration = ExecConfiguration(command: ["sh", "-c", #"read line; echo '{"type":"hello","version":2}'; cat > /dev/null"#])
        configuration.restartDelay = 5
        let supervisor = ExecSupervisor(configuration: configuration)
        let run = Task { await supervisor.run(hello: .hello(plugin: "v2", bot: nil, config: nil), logger: recorder.logger()) { _ in .success([:]) } }
        try await recorder.waitFor("speaks version 2 of the exec protocol and this agent speaks 1")
        #expect(supervisor.status.greeted == false)
        run.cancel()
        await run.value
    }

    @Test("a program that never answers the hello is stopped after the timeout")
    func silentProgram() async throws {
        let recorder = LogRecorder()
        var configuration = ExecConfiguration(command: ["sh", "-c", "cat > /dev/null"])
        configuration.helloTimeout = 0.3
        configuration.restartDelay = 5
        let supervisor = ExecSupervisor(configuration: configuration)
        let run = Task { await supervisor.run(hello: .hello(plugin: "mute", bot: nil, config: nil), logger: recorder.logger()) { _ in .success([:]) } }
        try await recorder.waitFor("did not answer the agent's hello within 0.3 s")
        run.cancel()
        await run.value
        #expect(supervisor.status.processId == nil)
    }

    @Test("bad lines are answered with an error and logged; the program goes on; events follow its wishes")
    func badLinesAndFilteredEvents() async throws {
        let recorder = LogRecorder()
        // Asks for reactions only, sends a bad action with an id, then logs the type of each line it reads.
        let script = #"""
            read hello
            echo '{"type":"hello","version":1,"events":["reaction"]}'
            echo '{"type":"send","id":"b1","roomId":"r1"}'
            while read line; do
              kind=$(echo "$line" | sed 's/.*"type":"\([a-z]*\)".*/\1/')
              echo "{\"type\":\"log\",\"message\":\"got $kind\"}"
            done
            """#
        let configuration = ExecConfiguration(command: ["sh", "-c", script])
        let supervisor = ExecSupervisor(configuration: configuration)
        let run = Task { await supervisor.run(hello: .hello(plugin: "sh", bot: nil, config: nil), logger: recorder.logger()) { _ in .success([:]) } }
        try await recorder.waitFor("exec plugin line ignored: `send` needs `content` (a string)")
        try await recorder.waitFor("got result")
        try await eventually("the hello") { supervisor.status.greeted }
        supervisor.deliver(.typing(TypingEvent(roomId: "r1", userId: "u", isTyping: true)))
        supervisor.deliver(.reaction(ReactionEvent(roomId: "r1", userId: "u", messageId: "m", reaction: "x", action: .add, reactions: ["x": 1])))
        try await recorder.waitFor("got reaction")
        #expect(!recorder.all.contains { $0.contains("got typing") })
        run.cancel()
        await run.value
    }

    @Test("stopping a program stops its process group: a child it started (sh -c \"… && node bot.js\") is not left running")
    func childrenOfTheProgramStopWithIt() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("exec-group-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let pidFile = folder.appendingPathComponent("child").path
        // The shell answers the hello, then waits for a child of its own, as `sh -c "cd x && node bot.js"` does.
        let script = #"""
            read hello
            echo '{"type":"hello","version":1}'
            sleep 300 &
            echo $! > "$1.tmp" && mv "$1.tmp" "$1"
            wait
            """#
        let supervisor = ExecSupervisor(configuration: ExecConfiguration(command: ["sh", "-c", script, "sh", pidFile]))
        let run = Task { await supervisor.run(hello: .hello(plugin: "group", bot: nil, config: nil), logger: LogRecorder().logger()) { _ in .success([:]) } }
        try await eventually("the program's child") { FileManager.default.fileExists(atPath: pidFile) }
        let child = try #require(pid_t(try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        defer { kill(child, SIGKILL) }
        #expect(Self.isRunning(child))
        run.cancel()
        await run.value
        try await eventually("the program's child ended with it") { !Self.isRunning(child) }
    }

    /// Whether `process` runs: it exists and is not a zombie waiting to be reaped.
    static func isRunning(_ process: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(process)/stat", encoding: .utf8), let end = stat.lastIndex(of: ")") else { return false }
        return !stat[end...].hasPrefix(") Z")
    }

    @Test("events wait in a bounded queue while the program is not ready, and the overflow is dropped, counted and logged")
    func boundedEvents() async throws {
        let recorder = LogRecorder()
        var configuration = ExecConfiguration(command: ["sh", "-c", "cat > /dev/null"])
        configuration.queueLimit = 3
        let supervisor = ExecSupervisor(configuration: configuration)
        let run = Task { await supervisor.run(hello: .hello(plugin: "slow", bot: nil, config: nil), logger: recorder.logger()) { _ in .success([:]) } }
        try await eventually("the program started") { supervisor.status.starts == 1 }
        for _ in 0..<5 { supervisor.deliver(.presence(PresenceEvent(userId: "u", status: .online))) }
        #expect(supervisor.status.droppedEvents == 2)
        try await recorder.waitFor("exec plugin event dropped")
        run.cancel()
        await run.value
    }
}
