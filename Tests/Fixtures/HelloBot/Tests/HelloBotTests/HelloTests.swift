import SwitchboardAgentTesting
import Testing
@testable import HelloBot

@Test func greets() async throws {
    try await BotTest.run(plugins: [Hello()]) { test in
        let answer = try await test.ask("!hello ana")
        #expect(answer == "Hello, ana!")
        #expect(try await test.ask("!hello") == "Hello, tester!")
    }
}
