import DiceBot
import EchoBot
import Foundation
import KarmaBot
import RemindBot
import SwitchboardAgent
import SwitchboardAgentTesting
import Testing
import WelcomeBot

@Suite("Bundled bots", .timeLimit(.minutes(2)))
struct BotsTests {
    @Test func echo() async throws {
        try await BotTest.run(plugins: [EchoPlugin()]) { test in
            let echoed = try await test.ask("!echo hello there")
            #expect(echoed == "hello there")
            #expect(try await test.askDirect("echo no prefix here") == "no prefix here")
            #expect(try await test.ask("!echo").contains("missing TEXT"))
        }
    }

    @Test func diceNotation() throws {
        let roll = try Dice.roll("3d6+2", random: { $0.upperBound })
        #expect(roll.total == 20 && roll.detail == "[6, 6, 6] + 2")
        #expect(try Dice.roll("d20 - 1", random: { $0.lowerBound }).total == 0)
        #expect(try Dice.roll("2d6+1d4", random: { $0.lowerBound }).total == 3)
        for bad in ["", "3x6", "0d6", "2d1", "101d6", "5", "d", "2d6+", "1d6++2", "1d6+9223372036854775807d6", "9223372036854775807d6+1d6"] {
            #expect(throws: CommandError.self, "\(bad)") { try Dice.roll(bad) }
        }
    }

    @Test func dice() async throws {
        try await BotTest.run(plugins: [DicePlugin(maxDice: 10)]) { test in
            let reply = try await test.ask("!roll 3d6+2")
            let total = try #require(reply.split(separator: "=").last.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) })
            #expect(reply.hasPrefix("🎲 3d6+2: [") && (5...20).contains(total))
            #expect(try await test.ask("!roll 11d6") == "at most 10 dice at once")
            #expect(try await test.ask("!roll 1d6+9223372036854775807d6") == "at most 10 dice at once", "a count that overflows the sum is refused")
            #expect(try await test.ask("!roll 2d6").hasPrefix("🎲 2d6"), "the bot goes on")
            #expect(try await test.ask("!roll banana").contains("unexpected \"b\""))
            #expect(try await test.ask("!r d20").hasPrefix("🎲 d20"))
        }
    }

    @Test func remindSurvivesRestarts() async throws {
        let zone = try #require(TimeZone(identifier: "Europe/Berlin"))
        // Monday 2026-01-05, 10:00 in Berlin.
        let start = try #require(ISO8601DateFormatter().date(from: "2026-01-05T09:00:00Z"))
        try await BotTest.run(plugins: [RemindPlugin()], clock: TestClock(now: start), configure: { $0.timeZone = zone.identifier }) { test in
            #expect(try await test.ask("!remind 10m stand up").hasPrefix("⏰ #1 Mon 5 Jan 10:10"))
            #expect(try await test.ask("!remind tomorrow 9:00 call ana").hasPrefix("⏰ #2 Tue 6 Jan 09:00"))
            #expect(try await test.ask("!remind 9:30 tea").hasPrefix("⏰ #3 Tue 6 Jan 09:30"), "a time already past today is tomorrow")
            #expect(try await test.ask("!remind soon-ish").contains("start with when"))
            #expect(try await test.ask("!reminders").split(separator: "\n").count == 3)
            #expect(try await test.ask("!forget 3") == "Cancelled #3: tea")
            #expect(try await test.ask("!forget 3").contains("no reminder #3"))

            test.advance(by: .seconds(600))
            #expect(try await test.reply().content == "⏰ tester: stand up")

            try await test.restartAgent()
            test.advance(by: .seconds(22 * 3600 + 50 * 60))   // 09:00 on Tuesday, on time
            #expect(try await test.reply().content == "⏰ tester: call ana")
            #expect(try await test.ask("!reminders").hasPrefix("No reminders"))
        }
    }

    @Test func welcomeGreetsOnFirstJoinOnly() async throws {
        try await BotTest.run(plugins: [WelcomePlugin(text: "Hi {name}, this is {room}.")]) { test in
            try await test.withUser("bob") { bob in
                // From the start: the bot greets on the `member` event, maybe before bob subscribes;
                // the tester's greeting (on their join) comes first.
                try await bob.client.subscribe(to: test.room.id, after: 0)
                var greeting = try await bob.nextMessage(from: test.bot.id)
                if greeting.content.contains("tester") { greeting = try await bob.nextMessage(from: test.bot.id) }
                #expect(greeting.content == "Hi bob, this is test-room.")
                await bob.client.unsubscribe(from: test.room.id)
                try await bob.client.subscribe(to: test.room.id)
                let probe = try await test.say("after bob's second visit")
                #expect(try await bob.nextMessage().id == probe.id, "no second greeting")
            }
        }
    }

    @Test func karma() async throws {
        try await BotTest.run(plugins: [KarmaPlugin()]) { test in
            #expect(try await test.ask("rust++ is great") == "rust has 1 point.")
            #expect(try await test.ask("thanks @ana++") == "ana has 1 point.")
            #expect(try await test.ask("rust++") == "rust has 2 points.")
            #expect(try await test.ask("go--") == "go has -1 point.")
            #expect(try await test.ask("tester++").hasPrefix("No karma for yourself"))
            #expect(try await test.ask("!karma RUST") == "rust has 2 points.")
            #expect(try await test.ask("!karma") == "Top karma:\n1. rust: 2\n2. ana: 1\n3. go: -1")
            try await test.restartAgent()
            #expect(try await test.ask("!karma rust") == "rust has 2 points.")
        }
    }
}
