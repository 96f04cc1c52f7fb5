import Foundation
import SwitchboardTesting
import Testing

@testable import LoadGenerator

/// Each scenario for about a second against a real server in this process. The figures are not
/// asserted (the machine is shared and noisy); the accounting is: nothing lost, nothing doubled.
@Suite("Scenarios, briefly", .timeLimit(.minutes(2)))
struct ScenarioSmokeTests {
    /// A server whose rate limit does not get in the way of a throughput run.
    private let configuration = TestServer.testConfiguration {
        $0.messagesPerSecond = 1_000_000
        $0.messageBurst = 1_000_000
    }

    private func options(_ url: String) -> EnvironmentOptions {
        var options = EnvironmentOptions()
        options.url = url
        options.progress = false
        options.threads = 2
        options.connectConcurrency = 32
        return options
    }

    private func messaging(clients: Int, rooms: Int, senders: Int, rate: Double = 0, window: Int = 2) -> MessagingSetup {
        MessagingSetup(
            clients: clients, rooms: rooms, senders: senders, rate: rate, window: window, maxInFlight: 64, size: 100, clientIds: true,
            duration: 1, warmup: 0.2, drainTimeout: 10)
    }

    @Test("fanout, as fast as acks allow: every acked message reaches every member once")
    func fanout() async throws {
        let report = try await TestServer.withServer(configuration: configuration) { server in
            try await BenchEnvironment.with(options(server.baseURL)) { environment in
                MessagingReport(
                    scenario: "fanout", outcome: try await MessagingRun.run(messaging(clients: 20, rooms: 2, senders: 4), in: environment, label: "fanout"),
                    environment: environment)
            }
        }
        #expect(report.acked > 0)
        #expect(report.deliveries == report.acked * 10)
        #expect(report.deliveriesPerSecond > 0)
        #expect(report.latency.count > 0)
        #expect(report.lost == 0)
        #expect(report.duplicates == 0)
        #expect(report.unacked == 0)
        #expect(report.errors.isEmpty)
        #expect(report.unexpectedCloses == 0)
        #expect(report.drained)
        #expect(!report.table.isEmpty)
        let json = try JSONSerialization.jsonObject(with: Data(report.json.utf8)) as? [String: Any]
        #expect(json?["scenario"] as? String == "fanout")
    }

    @Test("fanout at a fixed rate sends about that many messages")
    func fanoutAtRate() async throws {
        let report = try await TestServer.withServer(configuration: configuration) { server in
            try await BenchEnvironment.with(options(server.baseURL)) { environment in
                MessagingReport(
                    scenario: "fanout", outcome: try await MessagingRun.run(messaging(clients: 12, rooms: 3, senders: 6, rate: 100), in: environment, label: "fanout"),
                    environment: environment)
            }
        }
        // 1.2 s of sending at 100 a second.
        #expect(report.sent > 60 && report.sent < 180)
        #expect(report.acked == report.sent)
        #expect(report.deliveries == report.acked * 4)
        #expect(report.lost == 0)
        #expect(report.duplicates == 0)
    }

    @Test("writes: concurrent senders get durable acks")
    func writes() async throws {
        let report = try await TestServer.withServer(configuration: configuration) { server in
            try await BenchEnvironment.with(options(server.baseURL)) { environment in
                MessagingReport(
                    scenario: "writes", outcome: try await MessagingRun.run(messaging(clients: 8, rooms: 8, senders: 8, window: 1), in: environment, label: "writes"),
                    environment: environment)
            }
        }
        #expect(report.acked > 0)
        #expect(report.ackedPerSecond > 0)
        #expect(report.ackLatency.count > 0)
        #expect(report.lost == 0)
        #expect(report.duplicates == 0)
        #expect(report.errors.isEmpty)
        #expect(report.table.contains("durable acked messages"))
    }

    @Test("the server's rate limit shows up as errors by code, and nothing is lost")
    func rateLimited() async throws {
        // A burst of 3 that does not refill during the run, however slow the machine.
        let limited = TestServer.testConfiguration {
            $0.messageBurst = 3
            $0.messagesPerSecond = 0.01
        }
        let report = try await TestServer.withServer(configuration: limited) { server in
            try await BenchEnvironment.with(options(server.baseURL)) { environment in
                MessagingReport(
                    scenario: "fanout", outcome: try await MessagingRun.run(messaging(clients: 4, rooms: 1, senders: 1, window: 8), in: environment, label: "fanout"),
                    environment: environment)
            }
        }
        #expect((report.errors["rate_limited"] ?? 0) > 0)
        #expect(report.failed > 0)
        #expect(report.acked > 0)
        #expect(report.lost == 0)
        #expect(report.duplicates == 0)
    }

    @Test("connections: idle authenticated connections open and stay open")
    func connections() async throws {
        let report = try await TestServer.withServer(configuration: configuration) { server in
            try await BenchEnvironment.with(options(server.baseURL)) { environment in
                try await ConnectionsScenario.run(ConnectionsSetup(connections: 60, users: 20, rate: 0, settle: 0.1, hold: 0.5), in: environment)
            }
        }
        #expect(report.opened == 60)
        #expect(report.failures.isEmpty)
        #expect(report.setupRate > 0)
        #expect(report.setupLatency.count == 60)
        #expect(report.closedDuringHold == 0)
        #expect(report.cpu.units == 60)
    }

    @Test("a bad token is counted as a refused upgrade")
    func refused() async throws {
        let failures = try await TestServer.withServer(configuration: configuration) { server in
            try await BenchEnvironment.with(options(server.baseURL)) { environment in
                let plans = (0..<3).map { ClientPlan(index: $0, account: Account(userId: "u_nobody", token: "not-a-token")) }
                return try await environment.connectAll(plans).failures
            }
        }
        #expect(failures == ["HTTP 401": 3])
    }

    @Test("recovery: a rejoin replays exactly the missed messages, in order")
    func recovery() async throws {
        let report = try await TestServer.withServer(configuration: configuration) { server in
            try await BenchEnvironment.with(options(server.baseURL)) { environment in
                try await RecoveryScenario.run(RecoverySetup(replay: 60, iterations: 3, writers: 3, clients: 10, rooms: 2), in: environment)
            }
        }
        #expect(report.rejoin.count == 3)
        #expect(report.replayedPerJoin == 60)
        #expect(report.badReplays == 0)
        #expect(!report.truncated)
        // An in-process server cannot be restarted by the generator.
        #expect(report.restart == nil)
        #expect(report.restartSkipped != nil)
    }

    @Test("recovery: clients come back after a restart of a server the generator started")
    func recoveryRestart() async throws {
        // `swift test` builds the server binary next to the tests; a missing one is a failure, not a skip.
        let folder = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidates = [folder.appendingPathComponent("switchboard").path, FileManager.default.currentDirectoryPath + "/.build/debug/switchboard"]
        let binary = try #require(
            candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }),
            "no switchboard binary beside the tests (looked at \(candidates)); run `swift build` first"
        )
        var options = options("")
        options.startServer = true
        options.serverBinary = binary
        let report = try await BenchEnvironment.with(options) { environment in
            try await RecoveryScenario.run(RecoverySetup(replay: 20, iterations: 2, writers: 2, clients: 20, rooms: 2, retryMilliseconds: 50), in: environment)
        }
        #expect(report.badReplays == 0)
        let restart = try #require(report.restart)
        #expect(restart.connectedBefore == 20)
        #expect(restart.rejoined == 20)
        #expect(restart.reconnectSeconds >= 0)
        #expect(restart.perClient.count == 20)
    }
}
