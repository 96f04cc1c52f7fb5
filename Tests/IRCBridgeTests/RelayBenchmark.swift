import Foundation
import SwitchboardProtocol
import SwitchboardServer
import SwitchboardTesting
import Testing

@testable import IRCBridge

/// Relay latency and throughput through one channel (chat → IRC), for BENCHMARKS.md. A measurement,
/// not a test: it runs only when asked for, with
/// `SWITCHBOARD_IRC_BENCHMARK=1 swift test --filter RelayBenchmark` (the IRC servers from scripts/services/irc.sh).
@Suite("Relay benchmark", .serialized, .enabled(if: ProcessInfo.processInfo.environment["SWITCHBOARD_IRC_BENCHMARK"] != nil))
struct RelayBenchmark {
    @Test(.timeLimit(.minutes(5)), arguments: [("default", 30), ("off", 1000)])
    func chatToIRC(flood: String, count: Int) async throws {
        let port = try IRCServers.inspircd()
        let channel = IRCServers.uniqueChannel("bench")
        let user = try await IRCTestPeer.connect(port: port, nick: IRCServers.uniqueNick("irc"))
        try await user.join(channel)
        // The chat server's per-user message limit lifted, so that only the bridge is measured.
        let unlimited = TestServer.testConfiguration {
            $0.messagesPerSecond = 1_000_000
            $0.messageBurst = 1_000_000
        }
        try await TestServer.withServer(configuration: unlimited) { server in
            let fixture = try await RelayFixture.make(server)
            let ann = try await server.connect(token: fixture.ann.token)
            let configuration = network(port: port, nick: IRCServers.uniqueNick("rel"), channel: channel, flood: flood == "off" ? .off : FloodControl())
            try await withRelay(fixture, network: configuration) { relay, _ in
                _ = try await user.next(timeout: .seconds(20)) { $0.command == "JOIN" && $0.sourceNick == relay.network.nick }
                let clock = ContinuousClock()
                let start = clock.now
                let receiver = Task {
                    var latencies: [Duration] = []
                    for number in 0..<count {
                        let line = try await user.privmsg(to: channel, timeout: .seconds(120))
                        #expect(line.parameters[1].hasPrefix("<ann> \(number) "))
                        let sentAt = Int64(line.parameters[1].split(separator: " ").last!)!
                        latencies.append(clock.now - start - .nanoseconds(sentAt))
                    }
                    return (latencies, clock.now - start)
                }
                for number in 0..<count {
                    let offset = clock.now - start
                    try await ann.sendMessage("\(number) \(offset.components.seconds * 1_000_000_000 + offset.components.attoseconds / 1_000_000_000)", roomId: fixture.room.id)
                }
                let (latencies, elapsed) = try await receiver.value
                let sorted = latencies.sorted()
                let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                print("RELAY BENCHMARK flood=\(flood) messages=\(count) elapsed=\(elapsed) throughput=\(String(format: "%.1f", Double(count) / seconds))/s latency p50=\(sorted[count / 2]) p99=\(sorted[count * 99 / 100]) max=\(sorted.last!)")
            }
        }
        await user.close()
    }
}
