import Foundation
import Testing
@testable import SwitchboardAgent

/// Values that would overflow a duration: refused where they are configured, harmless where they run.
@Suite("Bounds", .timeLimit(.minutes(1)))
struct BoundsTests {
    @Test func aTalkRateThatWouldWaitForeverOrIsNotANumberIsRefused() throws {
        func errors(perSecond: String) throws -> [String] {
            let configuration = try AgentConfiguration.parse(yaml: """
                bots:
                  - name: one
                    token: t
                    talkRate: {perSecond: \(perSecond), burst: 5}
                    plugins: []
                """)
            return Agent.check(configuration, plugins: []).map(\.message)
        }
        for bad in ["1e-300", "-1", ".nan", ".inf", "1e300"] {
            let found = try errors(perSecond: bad)
            #expect(found.count == 1 && found[0].contains("bot one: talkRate.perSecond") && found[0].contains("no limit"), "\(bad): \(found)")
        }
        for good in ["0", "0.0001", "1", "1000"] {
            #expect(try errors(perSecond: good).isEmpty, "\(good)")
        }
    }

    @Test func aTalkRateGivenInPartTakesTheDefaultForTheRest() throws {
        let configuration = try AgentConfiguration.parse(yaml: """
            bots:
              - name: one
                token: t
                talkRate: {perSecond: 2}
                plugins: []
              - name: two
                token: t
                talkRate: {burst: 9}
                plugins: []
            """)
        #expect(configuration.bots.map(\.talkRate) == [TalkRate(perSecond: 2, burst: 5), TalkRate(perSecond: 1, burst: 9)])
    }

    @Test func theSystemClockWaitsForAFarDeadlineWithoutOverflowing() async throws {
        // A schedule every 1e300 seconds comes due that far ahead; the wait until then must not trap.
        let far = ScheduleSpec.every(seconds: 1e300).next(after: Date(), timeZone: .gmt)!
        let sleeper = Task { try await SystemClock().sleep(until: far) }
        sleeper.cancel()
        await #expect(throws: CancellationError.self) { try await sleeper.value }
    }
}
