import Foundation
import SwitchboardClient
import SwitchboardProtocol
import Testing

@testable import SwitchboardAgent

@Suite("Exec protocol: lines, framing, restarts, queue", .timeLimit(.minutes(1)))
struct ExecWireTests {
    static let bot = User(id: "u-bot", username: "pybot", displayName: "Py Bot", isBot: true)
    static let message = Message(
        id: "m1", roomId: "r1", seq: 7, userId: "u-ana", content: "@pybot !ping", createdAt: 1_700_000_000_000, clientId: nil,
        replyTo: nil, meta: nil, editedAt: nil, deleted: false, reactions: [:]
    )

    static func decoded(_ line: ExecLine) throws -> JSONValue {
        try Wire.decode(JSONValue.self, from: try line.encoded())
    }

    @Test("the agent's hello carries the version, the plugin, the bot and the config")
    func agentHello() throws {
        let json = try Self.decoded(.hello(plugin: "py", bot: Self.bot, config: ["prefix": "?"]))
        #expect(json["type"] == "hello")
        #expect(json["version"] == .integer(Int64(ExecProtocol.version)))
        #expect(json["plugin"] == "py")
        #expect(json["bot"]?["username"] == "pybot")
        #expect(json["config"]?["prefix"] == "?")
    }

    @Test("a message event holds the message, the text without the address, and the flags")
    func messageEvent() throws {
        let json = try Self.decoded(.message(Self.message, sender: nil, text: "!ping", mentioned: true, direct: false))
        #expect(json["type"] == "message")
        #expect(json["roomId"] == "r1")
        #expect(json["message"]?["seq"] == .integer(7))
        #expect(json["text"] == "!ping")
        #expect(json["mentioned"] == true)
        #expect(json["direct"] == false)
        #expect(json["sender"] == nil)
    }

    @Test("results say ok with what the action returned, or the error")
    func results() throws {
        let success = try Self.decoded(.result(id: "4", .success(["reactions": ["👍": 1]])))
        #expect(success["ok"] == true)
        #expect(success["id"] == "4")
        #expect(success["reactions"]?["👍"] == .integer(1))
        let failure = try Self.decoded(.result(id: "5", .failure(code: "forbidden", message: "not a member")))
        #expect(failure["ok"] == false)
        #expect(failure["error"]?["code"] == "forbidden")
    }

    @Test("program lines are read into requests")
    func parsing() throws {
        #expect(try ExecRequest.parse(Array(#"{"type":"hello","version":1}"#.utf8)) == .hello(ExecHello(version: 1)))
        #expect(
            try ExecRequest.parse(Array(#"{"type":"hello","version":1,"events":["message","reaction"]}"#.utf8))
                == .hello(ExecHello(version: 1, events: ["message", "reaction"]))
        )
        #expect(
            try ExecRequest.parse(Array(#"{"type":"send","id":"1","roomId":"r1","content":"pong","replyTo":"m1"}"#.utf8))
                == .send(id: "1", roomId: "r1", content: "pong", replyTo: "m1", meta: nil)
        )
        #expect(
            try ExecRequest.parse(Array(#"{"type":"react","roomId":"r1","messageId":"m1","reaction":"👍"}"#.utf8))
                == .react(id: nil, roomId: "r1", messageId: "m1", reaction: "👍", action: .add)
        )
        #expect(try ExecRequest.parse(Array(#"{"type":"typing","roomId":"r1"}"#.utf8)) == .typing(id: nil, roomId: "r1", isTyping: true))
        #expect(try ExecRequest.parse(Array(#"{"type":"log","message":"hi"}"#.utf8)) == .log(level: "info", message: "hi"))
    }

    @Test("a bad line is refused with a reason that names the member, and keeps its id")
    func badLines() {
        func error(_ text: String) -> ExecLineError? {
            do {
                _ = try ExecRequest.parse(Array(text.utf8))
                return nil
            } catch {
                return error
            }
        }
        #expect(error("not json")?.message.hasPrefix("not JSON") == true)
        #expect(error("[1]")?.message == "a line must be a JSON object, not an array")
        #expect(error(#"{"type":"send","id":"9","roomId":"r1"}"#) == ExecLineError(id: "9", message: "`send` needs `content` (a string)"))
        #expect(error(#"{"type":"send","roomId":5,"content":"x"}"#)?.message == "`roomId` must be a string, not a number")
        #expect(error(#"{"type":"fly","id":"3"}"#)?.id == "3")
        #expect(error(#"{"type":"hello","version":1,"events":["messages"]}"#)?.message.contains("unknown event types") == true)
        #expect(error(#"{"type":"react","roomId":"r","messageId":"m","reaction":"x","action":"toggle"}"#)?.message.contains("add") == true)
    }

    @Test("every line type is described in the JSON Schema with the members it always has")
    func schemaCoversTheLines() throws {
        let schemaURL = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources/SwitchboardAgent/Exec/exec-plugin.schema.json")
        let schema = try Wire.decode(JSONValue.self, from: Array(try Data(contentsOf: schemaURL)))
        let definitions = try #require(schema["$defs"]?.objectValue)
        let room = Room(id: "r1", name: "general", kind: .group, isPublic: false, createdAt: 1, lastSeq: 0, members: ["u-bot"])
        let lines: [(String, ExecLine)] = [
            ("agent.hello", .hello(plugin: "py", bot: Self.bot, config: nil)),
            ("event.message", .message(Self.message, sender: Self.bot, text: "hi", mentioned: false, direct: true)),
            ("event.typing", .typing(TypingEvent(roomId: "r1", userId: "u", isTyping: true))),
            ("event.presence", .presence(PresenceEvent(userId: "u", status: .online))),
            ("event.reaction", .reaction(ReactionEvent(roomId: "r1", userId: "u", messageId: "m1", reaction: "👍", action: .add, reactions: ["👍": 1]))),
            ("event.member", .member(roomId: "r1", user: Self.bot, added: true, by: "u")),
            ("event.join", .visit(roomId: "r1", user: Self.bot, joined: true)),
            ("event.leave", .visit(roomId: "r1", user: Self.bot, joined: false)),
            ("event.room", .room(room)),
            ("agent.result", .result(id: "1", .failure(code: "invalid", message: "no"))),
        ]
        var eventTypes: Set<String> = []
        for (name, line) in lines {
            let definition = try #require(definitions[name], "no \(name) in the schema")
            let json = try Self.decoded(line)
            #expect(definition["properties"]?["type"]?["const"] == json["type"], "\(name)")
            guard case .array(let required)? = definition["required"] else {
                Issue.record("\(name) has no required list")
                continue
            }
            for member in required.compactMap(\.stringValue) {
                #expect(json[member] != nil, "\(name) misses \(member)")
            }
            for member in json.objectValue!.keys {
                #expect(definition["properties"]?[member] != nil, "\(name) does not describe \(member)")
            }
            if name.hasPrefix("event.") { eventTypes.insert(json["type"]!.stringValue!) }
        }
        #expect(eventTypes == ExecProtocol.eventTypes)
        #expect(definitions["program.hello"]?["properties"]?["version"]?["const"] == .integer(Int64(ExecProtocol.version)))
        for action in ["send", "react", "typing", "log"] {
            #expect(definitions["action.\(action)"]?["properties"]?["type"]?["const"] == .string(action))
        }
    }

    @Test("lines are cut at new lines, carriage returns dropped, long lines dropped and reported")
    func framing() {
        var framer = LineFramer(maxLineBytes: 5)
        #expect(framer.append(Array("ab".utf8)) == [])
        #expect(framer.append(Array("c\r\nde\n".utf8)) == [.line(Array("abc".utf8)), .line(Array("de".utf8))])
        #expect(framer.append(Array("1234567890\nok\n".utf8)) == [.overlong(bytes: 10), .line(Array("ok".utf8))])
        #expect(framer.append(Array("12345".utf8)) == [])
        #expect(framer.append(Array("\n".utf8)) == [.line(Array("12345".utf8))])
        #expect(framer.append(Array("tail".utf8)) == [])
        #expect(framer.finish() == .line(Array("tail".utf8)))
        #expect(framer.finish() == nil)
    }

    @Test("restarts wait longer after each quick failure, up to the bound, and start over after a stable run")
    func restartSchedule() {
        var configuration = ExecConfiguration(command: ["true"])
        configuration.restartDelay = 0.5
        configuration.maxRestartDelay = 3
        configuration.stableAfter = 30
        var schedule = RestartSchedule(backoff: configuration.backoff)
        let quick = Duration.milliseconds(100)
        #expect(schedule.ended(after: quick) == .seconds(0.5))
        #expect(schedule.ended(after: quick) == .seconds(1))
        #expect(schedule.ended(after: quick) == .seconds(2))
        #expect(schedule.ended(after: quick) == .seconds(3))
        #expect(schedule.ended(after: quick) == .seconds(3))
        #expect(schedule.ended(after: .seconds(31)) == .seconds(0.5))
        #expect(schedule.attempt == 1)
    }

    @Test("the event queue refuses past its bound, keeps order, and a waiting pop ends on cancellation")
    func boundedQueue() async {
        let queue = BoundedQueue<Int>(limit: 2)
        #expect(queue.push(1))
        #expect(queue.push(2))
        #expect(!queue.push(3))
        #expect(await queue.pop() == 1)
        #expect(await queue.pop() == 2)
        let waiting = Task { await queue.pop() }
        waiting.cancel()
        #expect(await waiting.value == nil)
        let receiving = Task { await queue.pop() }
        #expect(queue.push(4))
        #expect(await receiving.value == 4)
    }

    @Test("a configuration needs a command and keeps defaults for the rest; bad values are named")
    func configuration() throws {
        let configuration = try JSONDecoder().decode(ExecConfiguration.self, from: Data(#"{"command":["python3","bot.py"],"queueLimit":10}"#.utf8))
        #expect(configuration.command == ["python3", "bot.py"])
        #expect(configuration.queueLimit == 10)
        #expect(configuration.restartDelay == 0.5)
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(ExecConfiguration.self, from: Data(#"{"command":[]}"#.utf8)) }
        do {
            _ = try JSONDecoder().decode(ExecConfiguration.self, from: Data(#"{"command":["x"],"stopTimeout":0}"#.utf8))
            Issue.record("a zero stopTimeout was accepted")
        } catch DecodingError.dataCorrupted(let context) {
            #expect(context.debugDescription.contains("stopTimeout"))
        }
    }

    @Test("values too large for a duration or a count are refused with the field and the range, not a crash")
    func configurationRanges() throws {
        let cases = [
            ("queueLimit", "1e20", "1 to 1000000"), ("queueLimit", "0.5", "1 to 1000000"), ("maxLineBytes", "1e300", "1 to 67108864"),
            ("stopTimeout", "1e300", "86400"), ("helloTimeout", "1e300", "86400"), ("restartDelay", "1e300", "86400"),
            ("maxRestartDelay", "1e300", "86400"), ("stableAfter", "1e300", "86400"), ("stopTimeout", "-1", "86400"),
        ]
        for (field, value, range) in cases {
            do {
                _ = try JSONDecoder().decode(ExecConfiguration.self, from: Data(#"{"command":["x"],"\#(field)":\#(value)}"#.utf8))
                Issue.record("\(field): \(value) was accepted")
            } catch DecodingError.dataCorrupted(let context) {
                #expect(context.debugDescription.contains("`\(field)`") && context.debugDescription.contains(range), "\(context.debugDescription)")
            }
        }
        // The paths of `--check` and of a reload: YAML, where infinity and NaN can be written.
        var configuration = AgentConfiguration()
        configuration.bots = ["queueLimit: .inf", "stopTimeout: .inf", "stableAfter: .nan", "queueLimit: 1000000\nstopTimeout: 86400"].enumerated().map { index, line in
            BotConfiguration(name: "b\(index)", token: .inline("t"), plugins: [.named("exec", configuration: "command: [x]\n" + line)])
        }
        let errors = Agent.check(configuration, plugins: [ExecPlugin.factory]).map(\.message)
        #expect(errors.count == 3, "\(errors)")
        #expect(errors.contains { $0.contains("bot b0") && $0.contains("queueLimit") })
        #expect(errors.contains { $0.contains("bot b1") && $0.contains("stopTimeout") })
        #expect(errors.contains { $0.contains("bot b2") && $0.contains("stableAfter") })
    }

    @Test("a program is found on PATH, and a missing one is named with the fix")
    func findingPrograms() throws {
        #expect(try ExecProcess.findExecutable("sh", environment: [:]).hasSuffix("/sh"))
        do {
            _ = try ExecProcess.findExecutable("no-such-program-here", environment: ["PATH": "/nonexistent"])
            Issue.record("a missing program was found")
        } catch let error as ExecError {
            #expect(error.code == .cannotStart)
            #expect(error.message.contains("not found on PATH"))
        }
    }
}
