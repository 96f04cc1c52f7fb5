import Foundation
import Testing
@testable import SwitchboardAgent

struct Greeting: Decodable, Sendable {
    var text: String
    var times: Int?
}

struct Silent: Plugin {}

let testFactories: [PluginFactory] = [
    PluginFactory("silent") { Silent() },
    PluginFactory("greeting", configuration: Greeting.self) { _ in Silent() },
]

@Suite("Agent configuration")
struct ConfigurationTests {
    @Test func readsEveryField() throws {
        let configuration = try AgentConfiguration.parse(yaml: """
            server: http://127.0.0.1:4000
            storage: data/agent.db
            admins: [ana]
            logLevel: debug
            timeZone: Europe/Berlin
            bots:
              - name: one
                token: sb_inline
                rooms: [general, r_123]
                prefix: "?"
                ignoreBots: false
                talkRate: {perSecond: 2, burst: 3}
                access:
                  - command: roll
                    denyUsers: [bob]
                plugins:
                  - silent
                  - name: greeting
                    config: {text: hi}
              - name: two
                tokenEnv: TWO_TOKEN
                rooms: {all: true, public: [lobby]}
                plugins: [silent]
              - name: three
                tokenFile: three.token
                plugins: []
            """, relativeTo: "/etc/switchboard")
        #expect(configuration.server == "http://127.0.0.1:4000")
        #expect(configuration.storage == "/etc/switchboard/data/agent.db")
        #expect(configuration.admins == ["ana"])
        #expect(configuration.logLevel == .debug)
        #expect(configuration.timeZone == "Europe/Berlin")
        #expect(configuration.bots.map(\.name) == ["one", "two", "three"])
        let one = configuration.bots[0]
        #expect(one.token == .inline("sb_inline"))
        #expect(one.rooms == RoomSelection(rooms: ["general", "r_123"]))
        #expect(one.prefix == "?")
        #expect(one.ignoreBots == false)
        #expect(one.talkRate == TalkRate(perSecond: 2, burst: 3))
        #expect(one.access == [AccessRule(command: "roll", denyUsers: ["bob"])])
        #expect(one.plugins.map(\.name) == ["silent", "greeting"])
        #expect(configuration.bots[1].token == .environment("TWO_TOKEN"))
        #expect(configuration.bots[1].rooms == RoomSelection(all: true, publicRooms: ["lobby"]))
        #expect(configuration.bots[2].token == .file("/etc/switchboard/three.token"))
    }

    @Test func reportsEveryProblemAtOnce() {
        #expect {
            try AgentConfiguration.parse(yaml: """
                server: ftp://x
                logLevel: loud
                timeZone: Mars/Olympus
                colour: blue
                bots:
                  - name: one
                    token: a
                    tokenEnv: B
                    plugins: [silent]
                  - token: x
                  - name: three
                    token: t
                """)
        } throws: { error in
            let errors = (error as? ConfigurationErrors)?.errors.map(\.message) ?? []
            return errors.count == 7
                && errors.contains { $0.hasPrefix("server:") }
                && errors.contains { $0.hasPrefix("logLevel:") }
                && errors.contains { $0.hasPrefix("timeZone:") }
                && errors.contains { $0.hasPrefix("colour:") }
                && errors.contains { $0.contains("bot one") && $0.contains("not token and tokenEnv") }
                && errors.contains { $0.hasPrefix("bots[1].name") }
                && errors.contains { $0.contains("bot three.plugins") }
        }
    }

    @Test func checksPluginsAndTheirConfigurationNamingBotPluginAndField() throws {
        let configuration = try AgentConfiguration.parse(yaml: """
            bots:
              - name: one
                token: t
                plugins:
                  - nope
                  - name: greeting
                    config: {times: 2}
              - name: two
                token: t
                plugins:
                  - name: greeting
                    config: {text: hi, times: many}
                  - name: silent
                    config: {x: 1}
              - name: three
                tokenEnv: SWITCHBOARD_AGENT_TEST_UNSET_VARIABLE
                plugins: [silent]
            """)
        let errors = Agent.check(configuration, plugins: testFactories).map(\.message)
        #expect(errors.count == 5, "\(errors)")
        #expect(errors.contains { $0.contains("bot one: unknown plugin nope") && $0.contains("greeting, silent") })
        #expect(errors.contains { $0 == "bot one, plugin greeting, config.text: missing; add it" })
        #expect(errors.contains { $0.hasPrefix("bot two, plugin greeting, config.times: expected Int") })
        #expect(errors.contains { $0.contains("bot two, plugin silent: takes no config") })
        #expect(errors.contains { $0.contains("bot three") && $0.contains("SWITCHBOARD_AGENT_TEST_UNSET_VARIABLE") })
    }

    @Test func pluginNamesTheFactoryAndNameTheInstanceSoOneFactoryRunsTwice() throws {
        let configuration = try AgentConfiguration.parse(yaml: """
            bots:
              - name: one
                token: t
                plugins:
                  - plugin: exec
                    name: pybot
                    config: {command: [python3, bot.py]}
                  - plugin: exec
                    name: nodebot
                    config: {command: [node, bot.js]}
                  - plugin: silent
                  - name: greeting
                    config: {text: hi}
              - name: two
                token: t
                plugins:
                  - plugin: nope
                    name: other
                  - plugin: exec
                    config: {command: [a]}
                  - plugin: exec
                    config: {command: [b]}
            """)
        let one = configuration.bots[0]
        let factories = testFactories + [ExecPlugin.factory]
        let made = try Agent.prepare(one, factories: factories).map { "\($0.name) \(type(of: $0.plugin))" }
        #expect(made == ["pybot ExecPlugin", "nodebot ExecPlugin", "silent Silent", "greeting Silent"])
        let errors = Agent.check(configuration, plugins: factories).map(\.message)
        #expect(errors.count == 2, "\(errors)")
        #expect(errors.contains { $0.contains("bot two: unknown plugin nope") && $0.contains("exec, greeting, silent") })
        #expect(errors.contains { $0.contains("bot two: the plugin exec is listed twice") && $0.contains("name:") })
    }

    /// The ```yaml blocks of a file of the package, in order.
    static func yamlBlocks(in file: String) throws -> [String] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent(file), encoding: .utf8)
        var blocks: [String] = []
        var block: [Substring]?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if block == nil, trimmed == "```yaml" {
                block = []
            } else if let lines = block, trimmed == "```" {
                blocks.append(lines.joined(separator: "\n"))
                block = nil
            } else {
                block?.append(line)
            }
        }
        return blocks
    }

    @Test func theDocumentedExecAndWebhooksExamplesParse() throws {
        let guide = try Self.yamlBlocks(in: "Sources/SwitchboardAgent/SwitchboardAgent.docc/ExecWebhooksHealth.md")
        let example = try #require(guide.first)
        let pybot = try #require(try AgentConfiguration.parse(yaml: example).bots.first)
        #expect(try Agent.prepare(pybot, factories: [ExecPlugin.factory]).map { "\($0.name) \(type(of: $0.plugin))" } == ["exec ExecPlugin"])

        let readme = try #require(Self.yamlBlocks(in: "README.md").first { $0.contains("plugin: exec") })
        let indented = readme.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n")
        let bot = try #require(AgentConfiguration.parse(yaml: "bots:\n  - name: hooks\n    token: t\n" + indented).bots.first)
        #expect(bot.plugins.map(\.name) == ["exec", "webhooks"])
    }
}

@Suite("Commands")
struct CommandTests {
    func message(_ text: String, direct: Bool = false) -> IncomingMessage {
        let room = Room(id: "r_1", name: "general", kind: direct ? .direct : .group, isPublic: false, createdAt: 0, lastSeq: 1, members: [])
        let message = Message(id: "m_1", roomId: "r_1", seq: 1, userId: "u_1", content: text, createdAt: 0, clientId: nil, replyTo: nil, meta: nil, editedAt: nil, deleted: false, reactions: [:])
        return IncomingMessage(message: message, room: room, sender: nil, mentionsBot: false, text: text)
    }

    @Test func findsCommandsByPrefixNameAndInDirectRooms() {
        let parser = CommandParser(prefix: "!", botNames: ["dice"])
        #expect(parser.find(in: message("!roll 2d6"))?.word == "roll")
        #expect(parser.find(in: message("!roll 2d6"))?.rest == "2d6")
        #expect(parser.find(in: message("dice: roll 2d6"))?.word == "roll")
        #expect(parser.find(in: message("@dice roll 2d6"))?.addressed == true)
        #expect(parser.find(in: message("Dice, !ROLL"))?.word == "roll")
        #expect(parser.find(in: message("roll 2d6", direct: true))?.word == "roll")
        #expect(parser.find(in: message("roll 2d6")) == nil)
        #expect(parser.find(in: message("dicey: roll")) == nil)
        #expect(CommandParser.mentions("hey @dice!", names: ["dice"]))
        #expect(!CommandParser.mentions("hey @dicey", names: ["dice"]))
    }

    @Test func parsesTypedArguments() throws {
        let command = Command("add", help: "Adds.", arguments: [.integer("a", in: 0...10), .choice("mode", ["fast", "slow"]), .number("n", default: 1.5), .text("rest", optional: true)]) { _, _ in }
        let values = try command.parse("3 FAST 2.5 the rest of it")
        #expect(values["a"] == .integer(3))
        #expect(values["mode"] == .string("fast"))
        #expect(values["n"] == .number(2.5))
        #expect(values["rest"] == .string("the rest of it"))
        #expect(try command.parse("3 slow")["n"] == .number(1.5))
        #expect(throws: CommandError.self) { try command.parse("11 fast") }
        #expect(throws: CommandError.self) { try command.parse("x fast") }
        #expect(throws: CommandError.self) { try command.parse("1 medium") }
        #expect(throws: CommandError.self) { try command.parse("") }
        #expect(command.usage(prefix: "!") == "!add A fast|slow [N] [REST…]")
        let exact = Command("one", help: "", arguments: [.word("x")]) { _, _ in }
        #expect(throws: CommandError.self) { try exact.parse("a b") }
    }

    @Test func schedulesComputeTheirNextTimeInTheTimeZone() throws {
        let berlin = try #require(TimeZone(identifier: "Europe/Berlin"))
        // 2026-01-05 is a Monday; 07:30 UTC is 08:30 in Berlin.
        let now = try #require(ISO8601DateFormatter().date(from: "2026-01-05T07:30:00Z"))
        #expect(ScheduleSpec.daily(hour: 9, minute: 0).next(after: now, timeZone: berlin) == ISO8601DateFormatter().date(from: "2026-01-05T08:00:00Z"))
        #expect(ScheduleSpec.daily(hour: 8, minute: 0).next(after: now, timeZone: berlin) == ISO8601DateFormatter().date(from: "2026-01-06T07:00:00Z"))
        #expect(ScheduleSpec.weekly(weekday: 4, hour: 9, minute: 0).next(after: now, timeZone: berlin) == ISO8601DateFormatter().date(from: "2026-01-07T08:00:00Z"))
        #expect(ScheduleSpec.every(.seconds(90)).next(after: now, timeZone: berlin) == now.addingTimeInterval(90))
        #expect(ScheduleSpec.once(at: now).next(after: now, timeZone: berlin) == nil)
        #expect(ScheduleSpec(parsing: "weekly wed 09:00") == .weekly(weekday: 4, hour: 9, minute: 0))
        #expect(ScheduleSpec(parsing: "every 5m") == .every(seconds: 300))
        #expect(ScheduleSpec(parsing: "daily 25:00") == nil)
    }

    @Test func accessRulesDenyAndAllow() {
        let rule = AccessRule(command: "roll", allowUsers: ["ana", "u_bob"], denyRooms: ["quiet"])
        #expect(rule.refusal(user: ("u_ana", "ana"), isAdmin: false, room: ("r_1", "general")) == nil)
        #expect(rule.refusal(user: ("u_bob", nil), isAdmin: false, room: ("r_1", "general")) == nil)
        #expect(rule.refusal(user: ("u_cy", "cy"), isAdmin: false, room: ("r_1", "general")) != nil)
        #expect(rule.refusal(user: ("u_ana", "ana"), isAdmin: false, room: ("r_2", "Quiet")) != nil)
        #expect(rule.refusal(user: ("u_cy", "cy"), isAdmin: true, room: ("r_2", "quiet")) == nil)
    }
}
