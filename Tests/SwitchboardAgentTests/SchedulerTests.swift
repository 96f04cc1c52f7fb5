import Foundation
import Logging
import SwitchboardAgentTesting
import Testing
@testable import SwitchboardAgent

@Suite("Scheduler", .timeLimit(.minutes(1)))
struct SchedulerTests {
    @Test func aScheduleCancelledOrTakenAfterItWasReadIsNotFired() async throws {
        let store = try await AgentStore.open(path: ":memory:", logger: Logger(label: "test"))
        let clock = TestClock(now: Date(timeIntervalSince1970: 1_800_000_000))
        let scheduler = Scheduler(store: store, bot: "b", clock: clock, timeZone: .gmt)
        try await scheduler.set(plugin: "p", id: "once", spec: .once(at: clock.now.addingTimeInterval(30)), payload: nil)
        try await scheduler.set(plugin: "p", id: "tick", spec: .every(seconds: 60), payload: nil)
        clock.advance(by: .seconds(60))
        let due = try await scheduler.list(plugin: "p")
        let once = try #require(due.first { $0.id == "once" })
        let tick = try #require(due.first { $0.id == "tick" })

        // Read as due, then cancelled (by a handler, or a reload) before the scheduler took it.
        #expect(try await scheduler.cancel(plugin: "p", id: "once"))
        #expect(try await scheduler.take(plugin: "p", job: once) == false, "a cancelled one-off is not fired")
        // Two schedulers of one bot (an old one and a new one, during a reload) read the same due tick.
        #expect(try await scheduler.take(plugin: "p", job: tick))
        #expect(try await scheduler.take(plugin: "p", job: tick) == false, "a tick already taken is not fired twice")
        #expect(try await scheduler.list(plugin: "p").map(\.dueAt) == [clock.now.addingTimeInterval(60)])
        await store.close()
    }
}
