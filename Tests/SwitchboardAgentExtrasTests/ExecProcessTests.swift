import Foundation
import SwitchboardClient
import SwitchboardProtocol
import SwitchboardTesting
import Testing

@testable import SwitchboardAgent

#if canImport(Glibc)
import Glibc
#endif

/// The exec supervisor with real programs: the Python example bot against a real server, and small
/// shell programs for the protocol's failures.
@Suite("Exec supervisor with real programs", .timeLimit(.minutes(2)))
struct ExecProcessTests {
    @Test("the Python example bot replies in a room, is killed, and is started again with backoff")
    func pythonBotRepliesAndComesBack() async throws {
        try await TestServer.withServer { server in
            let ana = try await server.register("ana")
            let pybot = try await server.register("pybot")
            let room = try await server.createRoom("general", token: ana.token, members: [pybot.user.id])
            let recorder = LogRecorder()
            try await ChatClient.withClient(configuration: clientConfiguration(server, token: pybot.token), logger: quietLogger("pybot")) { client in
                _ = try await client.subscribe(to: room.id)
                var configuration = ExecConfiguration(command: ["python3", pythonExampleBot])
                configuration.restartDelay = 0.2
                let supervisor = ExecSupervisor(name: "py", configuration: configuration, logger: recorder.logger())
                let messages = client.messages(in: room.id)
                try await withThrowingTaskGroup(of: Void.self) { tasks in
                    tasks.addTask {
                        await supervisor.run(hello: .hello(plugin: "py", bot: pybot.user, config: nil)) { request in
                            await request.perform(as: client)
                        }
                    }
                    tasks.addTask {
                        for await message in messages where message.userId != pybot.user.id {
                            supervisor.deliver(.message(message, sender: nil, text: message.content, mentioned: false, direct: false))
                        }
                    }
                    let socket = try await server.connect(token: ana.token)
                    _ = try await socket.join(room.id)
                    let ping = try await socket.sendMessage("!ping", roomId: room.id)
                    let pong = try await socket.next { $0.type == "message" && $0.userId == pybot.user.id }.decode(Message.self)
                    #expect(pong.content == "pong")
                    #expect(pong.replyTo == ping.id)
                    let reaction = try await socket.next { $0.type == "reaction" }
                    #expect(reaction.data?["reaction"] == "👍")
                    try await recorder.waitFor("ready as pybot")  // its standard error reaches the log

                    let first = try #require(supervisor.status.processId)
                    kill(first, SIGKILL)
                    try await recorder.waitFor("was killed by signal 9; starting it again in 0.2 seconds")
                    try await eventually("a second program that answered the hello") {
                        supervisor.status.starts == 2 && supervisor.status.greeted
                    }
                    let second = try #require(supervisor.status.processId)
                    #expect(second != first)
                    _ = try await socket.sendMessage("!about", roomId: room.id)
                    let about = try await socket.next { $0.type == "message" && $0.userId == pybot.user.id }.decode(Message.self)
                    #expect(about.content == "python-example: pid \(second), exec protocol 1")

                    // A second quick death waits twice as long: the backoff grows.
                    kill(second, SIGKILL)
                    try await recorder.waitFor("starting it again in 0.4")
                    await socket.close()
                    tasks.cancelAll()
                }
            }
        }
    }

    @Test("a program that speaks another version is stopped with both versions named")
    func versionMismatch() async throws {
        let recorder = LogRecorder()
        var configuration = ExecConfiguration(command: ["sh", "-c", #"read line; echo '{"type":"hello","version":2}'; cat > /dev/null"#])
        configuration.restartDelay = 5
        let supervisor = ExecSupervisor(name: "v2", configuration: configuration, logger: recorder.logger())
        let run = Task { await supervisor.run(hello: .hello(plugin: "v2", bot: nil, config: nil)) { _ in .success([:]) } }
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
        let supervisor = ExecSupervisor(name: "mute", configuration: configuration, logger: recorder.logger())
        let run = Task { await supervisor.run(hello: .hello(plugin: "mute", bot: nil, config: nil)) { _ in .success([:]) } }
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
        let supervisor = ExecSupervisor(name: "sh", configuration: configuration, logger: recorder.logger())
        let run = Task { await supervisor.run(hello: .hello(plugin: "sh", bot: nil, config: nil)) { _ in .success([:]) } }
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

    @Test("events wait in a bounded queue while no program reads them, and the overflow is dropped and counted")
    func boundedEvents() async throws {
        let recorder = LogRecorder()
        var configuration = ExecConfiguration(command: ["sh", "-c", "exit 0"])
        configuration.queueLimit = 3
        let supervisor = ExecSupervisor(name: "slow", configuration: configuration, logger: recorder.logger())
        for _ in 0..<5 { supervisor.deliver(.presence(PresenceEvent(userId: "u", status: .online))) }
        #expect(supervisor.status.droppedEvents == 2)
        try await recorder.waitFor("exec plugin event dropped")
    }
}
