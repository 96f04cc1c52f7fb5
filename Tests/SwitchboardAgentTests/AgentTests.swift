import EchoBot
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing
@testable import SwitchboardAgent
import SwitchboardAgentTesting
import SwitchboardTesting

/// A plugin for these tests: fails on demand, counts in storage, talks in bursts.
struct Probe: Plugin {
    /// When set, `run` fails twice, then says how many times it ran.
    let runs: Counter?
    init(runs: Counter? = nil) { self.runs = runs }

    var name: String { "probe" }

    var commands: [Command] {
        [
            Command("boom", help: "Throws.") { _, _ in throw ProbeFailure() },
            Command("count", help: "Counts, in storage.") { _, context in
                let value = try await context.storage.increment("count")
                try await context.reply("count \(value)")
            },
            Command("burst", help: "Says N messages at once.", arguments: [.integer("n", in: 1...20)]) { call, context in
                for index in 1...call.integer("n")! { try await context.say("burst \(index)") }
            },
            Command("secret", help: "Admins only.", adminOnly: true) { _, context in try await context.reply("the secret") },
            Command("later", help: "Once after SECONDS.", arguments: [.integer("seconds"), .text("text")]) { call, context in
                try await context.schedules.set("later-\(call.string("text")!)", .once(at: context.now.addingTimeInterval(Double(call.integer("seconds")!))), payload: "\(call.message.roomId) \(call.string("text")!)")
                try await context.reply("scheduled")
            },
            Command("every", help: "Every SECONDS.", arguments: [.integer("seconds")]) { call, context in
                try await context.schedules.set("tick", .every(.seconds(call.integer("seconds")!)), payload: "\(call.message.roomId) tick")
                try await context.reply("scheduled")
            },
            Command("stop", help: "Cancels the tick.") { _, context in
                try await context.reply(try await context.schedules.cancel("tick") ? "stopped" : "no tick")
            },
        ]
    }

    var middleware: [any Middleware] { [Censor()] }

    func onSchedule(_ job: ScheduledJob, context: PluginContext) async throws {
        let parts = job.payload!.split(separator: " ", maxSplits: 1)
        try await context.send("fired \(parts[1])", to: String(parts[0]))
    }

    func run(context: PluginContext) async throws {
        guard let runs else { return }
        let count = runs.increment()
        if count < 3 { throw ProbeFailure() }
        try await context.send("run \(count)", to: try await context.client.rooms().first!.room.id)
        try await Task.sleep(for: .seconds(3600))
    }
}

struct ProbeFailure: Error {}

/// Stops every message that contains "censored".
struct Censor: Middleware {
    func handle(_ event: AgentEvent, context: PluginContext, next: () async throws -> Void) async throws {
        if case .message(let message) = event, message.content.contains("censored") { return }
        try await next()
    }
}

/// A command that never answers until it is cancelled, and says when it started and was cancelled.
struct Hanger: Plugin {
    let started = Signal()
    let cancelled = Signal()

    var name: String { "hanger" }

    var commands: [Command] {
        [
            Command("hang", help: "Waits an hour.") { _, _ in
                started.fire()
                do { try await Task.sleep(for: .seconds(3600)) } catch {
                    cancelled.fire()
                    throw error
                }
            }
        ]
    }
}

/// A command that answers only once the test lets it, so that events pile up behind it.
struct Holder: Plugin {
    let entered = Signal()
    let release = Signal()

    var name: String { "holder" }

    var commands: [Command] {
        [
            Command("hold", help: "Answers when released.") { _, context in
                entered.fire()
                await release.wait()
                try await context.reply("released")
            }
        ]
    }
}

final class Counter: Sendable {
    private let value = Mutex(0)
    func increment() -> Int { value.withLock { $0 += 1; return $0 } }
}

@Suite("Agent", .timeLimit(.minutes(2)))
struct AgentTests {
    @Test func aThrowingHandlerIsLoggedAndTheBotGoesOn() async throws {
        try await BotTest.run(plugins: [Probe(), EchoPlugin()]) { test in
            #expect(try await test.ask("!boom").contains("failed"))
            #expect(try await test.ask("!ping") == "pong")
            let snapshot = try #require(test.agent.statistics()["testbot"])
            #expect(snapshot.handlerErrors >= 1)
        }
    }

    @Test func aCrashingRunIsRestartedWithBackoff() async throws {
        let runs = Counter()
        try await BotTest.run(plugins: [Probe(runs: runs)]) { test in
            // Fails twice (restarted after 1 s, then 2 s), then says so.
            let message = try await test.reply(timeout: .seconds(20))
            #expect(message.content == "run 3")
        }
    }

    @Test func helpIsGeneratedFromTheDeclarations() async throws {
        try await BotTest.run(plugins: [Probe(), EchoPlugin()]) { test in
            let overview = try await test.ask("!help")
            #expect(overview.contains("!echo TEXT…"))
            #expect(overview.contains("!burst N — Says N messages at once."))
            #expect(!overview.contains("!secret"), "admin-only commands are hidden from others")
            let detail = try await test.ask("!help burst")
            #expect(detail.contains("!burst N") && detail.contains("plugin probe"))
            #expect(try await test.askDirect("help echo").contains("!echo TEXT…"), "no prefix in a direct room")
            #expect(try await test.ask("testbot: help ping").contains("!ping"), "the bot's name works as a prefix")
            #expect(try await test.ask("!burst x").contains("must be a whole number"))
        }
    }

    @Test func ownMessagesAndOtherBotsDoNotTrigger() async throws {
        try await BotTest.run(plugins: [EchoPlugin()]) { test in
            let (other, otherToken) = try await BotTest.makeBotUser(test.server, named: "otherbot")
            _ = try await test.server.request(.POST, "/api/rooms/\(test.room.id)/members", token: test.tester.token, json: UserIdRequest(userId: other.id))
            _ = try await test.server.request(.POST, "/api/rooms/\(test.room.id)/messages", token: otherToken, json: SendMessageData(content: "!echo from a bot"))
            // The bot's own "!echo !echo loop" reply does not trigger it again either.
            let mine = try await test.say("!echo !echo loop")
            let reply = try await test.reply()
            #expect(reply.replyTo == mine.id && reply.content == "!echo loop")
            let probe = try await test.say("!ping")
            let next = try await test.reply()
            #expect(next.replyTo == probe.id, "nothing came between: not for the other bot, not for its own message")
        }
    }

    @Test func accessControlAndMiddlewareRunBeforeHandlers() async throws {
        try await BotTest.run(plugins: [Probe(), EchoPlugin()], configure: { configuration in
            configuration.bots[0].access = [AccessRule(command: "echo", denyUsers: ["tester"])]
        }) { test in
            #expect(try await test.ask("!secret").contains("only admins"))
            #expect(try await test.ask("!echo hi").contains("may not"))
            try await test.say("!count censored")
            #expect(try await test.ask("!count") == "count 1", "the middleware stopped the first")
        }
        try await BotTest.run(plugins: [Probe()], configure: { $0.admins = ["tester"] }) { test in
            let answer = try await test.ask("!secret")
            #expect(answer == "the secret")
        }
    }

    @Test func theTalkLimitWaitsAndDropsNothing() async throws {
        try await BotTest.run(plugins: [Probe()], configure: { $0.bots[0].talkRate = TalkRate(perSecond: 20, burst: 2) }) { test in
            try await test.say("!burst 12")
            for index in 1...12 {
                #expect(try await test.reply().content == "burst \(index)")
            }
        }
    }

    @Test func storageAndPositionsSurviveARestart() async throws {
        try await BotTest.run(plugins: [Probe(), EchoPlugin()]) { test in
            #expect(try await test.ask("!count") == "count 1")
            try await test.restartAgent()
            #expect(try await test.ask("!count") == "count 2")
            await test.stopAgent()
            let whileDown = try await test.say("!echo while down")
            try await test.startAgent()
            let reply = try await test.reply()
            #expect(reply.replyTo == whileDown.id, "handled after the restart, from the stored position")
            try await test.restartAgent()
            let probe = try await test.say("!ping")
            #expect(try await test.reply().replyTo == probe.id, "not handled twice")
        }
    }

    @Test func storageKeysStartingWithAPrefixOfCombinedCharacters() async throws {
        let store = try await AgentStore.open(path: ":memory:", logger: Logger(label: "test"))
        let storage = PluginStorage(store: store, bot: "b", plugin: "p")
        // "👍🏽" is one Character of two scalars, "e\u{301}" (é) one of two; SQLite counts scalars.
        for key in ["👍🏽:ana", "👍🏽:bo", "👍:cy", "e\u{301}t\u{e9}", "et\u{e9}", "plain"] { try await storage.set(key, 1) }
        #expect(try await storage.keys(prefix: "👍🏽") == ["👍🏽:ana", "👍🏽:bo"])
        #expect(try await storage.keys(prefix: "👍🏽:a") == ["👍🏽:ana"])
        #expect(try await storage.keys(prefix: "e\u{301}") == ["e\u{301}t\u{e9}"])
        #expect(try await storage.keys(prefix: "pl") == ["plain"])
        #expect(try await storage.keys().count == 6)
        await store.close()
    }

    @Test func aDirectRoomMadeLaterIsFollowedFromItsFirstMessage() async throws {
        try await BotTest.run(plugins: [EchoPlugin()]) { test in
            // The direct room does not exist when the bot starts: the client follows it when it appears.
            let asked = try await test.tester.sayDirect("echo first words", to: test.bot.id)
            let reply = try await test.tester.nextMessage(from: test.bot.id, in: asked.roomId)
            #expect(reply.replyTo == asked.id)
        }
    }

    @Test func aReplyThatDoesNotComeNamesTheWaitAndWhatCameInstead() async throws {
        try await BotTest.run(plugins: [EchoPlugin()]) { test in
            try await test.withUser("olga") { olga in
                try await olga.client.subscribe(to: test.room.id)
                try await test.say("not from the bot")
                let line = #line + 1
                let failure = await #expect(throws: TestFailure.self) { try await olga.nextMessage(from: test.bot.id, timeout: .milliseconds(500)) }
                let text = failure?.description ?? ""
                #expect(text.contains("AgentTests.swift:\(line)") && text.contains("for olga"), "\(text)")
                #expect(text.contains("1 other messages") && text.contains("not from the bot"), "\(text)")
            }
        }
    }

    @Test func aHandlerThatSendsWhileThousandsOfEventsWaitIsAnswered() async throws {
        // The bot handles its events one at a time. While one handler runs, more events than the
        // client's queues hold arrive; the handler's send then waits for an ack that comes after them.
        let holder = Holder()
        let flood = TestServer.testConfiguration { configuration in
            configuration.messagesPerSecond = 100_000
            configuration.messageBurst = 100_000
        }
        try await BotTest.run(plugins: [holder, EchoPlugin()], server: flood) { test in
            try await test.say("!hold")
            await holder.entered.wait()
            for index in 1...2_500 { try await test.say("flood \(index)") }
            holder.release.fire()
            #expect(try await test.reply(timeout: .seconds(30)).content == "released")
            let ping = try await test.say("!ping")
            #expect(try await test.reply(timeout: .seconds(60)).replyTo == ping.id)
        }
    }

    @Test func schedulesFireOnTheClockAndSurviveRestarts() async throws {
        try await BotTest.run(plugins: [Probe()]) { test in
            #expect(try await test.ask("!later 60 one") == "scheduled")
            test.advance(by: .seconds(61))
            #expect(try await test.reply().content == "fired one")

            #expect(try await test.ask("!later 86400 tomorrow") == "scheduled")
            try await test.restartAgent()
            test.advance(by: .seconds(86401))
            #expect(try await test.reply().content == "fired tomorrow")

            #expect(try await test.ask("!later 600 missed") == "scheduled")
            await test.stopAgent()
            test.advance(by: .seconds(3600))
            try await test.startAgent()
            #expect(try await test.reply().content == "fired missed", "missed while down: fires once on return")

            #expect(try await test.ask("!every 30") == "scheduled")
            await test.stopAgent()
            test.advance(by: .seconds(300))
            try await test.startAgent()
            #expect(try await test.reply().content == "fired tick", "ten missed ticks fire once")
            #expect(try await test.ask("!stop") == "stopped")
        }
    }

    @Test func reloadAddsAndRemovesBotsWithoutTouchingTheOthers() async throws {
        try await BotTest.run(plugins: [EchoPlugin()]) { test in
            let firstSession = try #require(test.agent.runners.withLock { $0["testbot"] }?.runtime.withLock { $0 })
            let (second, token) = try await BotTest.makeBotUser(test.server, named: "second")
            _ = try await test.server.request(.POST, "/api/rooms/\(test.room.id)/members", token: test.tester.token, json: UserIdRequest(userId: second.id))
            var next = test.configuration
            next.bots.append(BotConfiguration(name: "second", token: .inline(token), plugins: [.instance(EchoPlugin())]))
            try await test.agent.reload(to: next)
            try await waitFor { test.agent.botNames == ["second", "testbot"] }
            #expect(await test.agent.waitUntilReady())
            let ping = try await test.say("second: ping")
            let pong = try await test.tester.nextMessage(from: second.id)
            #expect(pong.replyTo == ping.id)
            let session = test.agent.runners.withLock { $0["testbot"] }?.runtime.withLock { $0 }
            #expect(session === firstSession, "the first bot kept its connection")

            try await test.agent.reload(to: test.configuration)
            try await waitFor { test.agent.botNames == ["testbot"] }
            #expect(try await test.ask("!ping") == "pong")
            #expect(test.agent.runners.withLock { $0["testbot"] }?.runtime.withLock { $0 } === firstSession)

            var broken = test.configuration
            broken.bots[0].plugins.append(.named("missing"))
            await #expect(throws: ConfigurationErrors.self) { try await test.agent.reload(to: broken) }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aHandlerThatNeverEndsIsCancelledWhenGracefulShutdownTakesTooLong() async throws {
        try await BotTest.run(plugins: [EchoPlugin()]) { test in
            let (stuck, token) = try await BotTest.makeBotUser(test.server, named: "stuck")
            _ = try await test.server.request(.POST, "/api/rooms/\(test.room.id)/members", token: test.tester.token, json: UserIdRequest(userId: stuck.id))
            let hanger = Hanger()
            var configuration = test.configuration
            configuration.storage = ":memory:"
            configuration.bots = [BotConfiguration(name: "stuck", token: .inline(token), plugins: [.instance(hanger)])]
            let logger = Logger(label: "stuck")
            let agent = Agent(configuration: configuration, logger: logger)
            var groupConfiguration = ServiceGroupConfiguration(services: [.init(service: agent)], logger: logger)
            groupConfiguration.maximumGracefulShutdownDuration = .milliseconds(200)
            let group = ServiceGroup(configuration: groupConfiguration)
            let stopped = Signal()
            Task {
                try? await group.run()
                stopped.fire()
            }
            #expect(await agent.waitUntilReady())
            _ = try await test.say("stuck: hang")
            await hanger.started.wait()

            await group.triggerGracefulShutdown()
            await stopped.wait()  // waited for the hour: the handler was never cancelled (ends at the time limit)
            #expect(stopped.hasFired)
            #expect(hanger.cancelled.hasFired)
        }
    }

    @Test func oneFailingBotDoesNotStopTheOthers() async throws {
        try await BotTest.run(plugins: [EchoPlugin()], configure: { configuration in
            configuration.bots.append(BotConfiguration(name: "broken", token: .inline("sb_not_a_token"), plugins: [.instance(EchoPlugin())]))
        }) { test in
            let answer = try await test.ask("!ping")
            #expect(answer == "pong")
            #expect(test.agent.statistics()["broken"] != nil)
        }
    }

    @Test func fiftyBotsInOneProcess() async throws {
        try await BotTest.run(plugins: [EchoPlugin()]) { test in
            var next = test.configuration
            var ids: Set<String> = []
            for index in 1...50 {
                let (bot, token) = try await BotTest.makeBotUser(test.server, named: "bot\(index)")
                ids.insert(bot.id)
                _ = try await test.server.request(.POST, "/api/rooms/\(test.room.id)/members", token: test.tester.token, json: UserIdRequest(userId: bot.id))
                next.bots.append(BotConfiguration(name: "bot\(index)", token: .inline(token), plugins: [.instance(EchoPlugin())]))
            }
            try await test.agent.reload(to: next)
            try await waitFor { test.agent.botNames.count == 51 }
            #expect(await test.agent.waitUntilReady(timeout: .seconds(60)))
            let ping = try await test.say("!ping")
            var answered: Set<String> = []
            while answered.count < 51 {
                let pong = try await test.tester.nextMessage(timeout: .seconds(30))
                guard pong.replyTo == ping.id else { continue }
                #expect(pong.content == "pong")
                answered.insert(pong.userId)
            }
            #expect(answered.isSuperset(of: ids))
        }
    }
}

/// Polls `condition` (cheap, local state) until it holds.
func waitFor(timeout: Duration = .seconds(30), _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        guard ContinuousClock.now < deadline else { throw TestFailure("condition not met within \(timeout)") }
        try await Task.sleep(for: .milliseconds(20))
    }
}
