@testable import SwitchboardServer
import Testing

@Suite("Pure state machines of the server", .timeLimit(.minutes(1)))
struct StateMachineTests {
    @Test("a token bucket allows the burst, then the rate")
    func tokenBucket() {
        var bucket = TokenBucket(rate: 10, burst: 3, now: .zero)
        #expect(bucket.take(now: .zero) == .allowed)
        #expect(bucket.take(now: .zero) == .allowed)
        #expect(bucket.take(now: .zero) == .allowed)
        #expect(bucket.take(now: .zero) == .limited(retryAfter: .milliseconds(100)))
        #expect(bucket.take(now: .milliseconds(50)) == .limited(retryAfter: .milliseconds(50)))
        #expect(bucket.take(now: .milliseconds(100)) == .allowed)
        // A long quiet spell refills to the burst, not beyond.
        for _ in 0..<3 { #expect(bucket.take(now: .seconds(60)) == .allowed) }
        #expect(bucket.take(now: .seconds(60)) != .allowed)
    }

    @Test("an answered ping keeps the connection; an unanswered one closes it")
    func heartbeat() {
        var heartbeat = Heartbeat()
        #expect(heartbeat.pingDue() == .sendPing(number: 1))
        heartbeat.receivedPong()
        #expect(heartbeat.timeoutDue(number: 1) == .none)
        #expect(heartbeat.pingDue() == .sendPing(number: 2))
        #expect(heartbeat.timeoutDue(number: 2) == .close)
    }

    @Test("a pong after a later ping still counts for the earlier one")
    func latePong() {
        var heartbeat = Heartbeat()
        _ = heartbeat.pingDue()
        _ = heartbeat.pingDue()
        heartbeat.receivedPong()
        #expect(heartbeat.timeoutDue(number: 1) == .none)
        #expect(heartbeat.timeoutDue(number: 2) == .none)
    }
}
