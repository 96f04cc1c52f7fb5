import Foundation
import SwitchboardProtocol
import SwitchboardTesting
import Synchronization
import Testing

@testable import SwitchboardClient

/// Defects a review of the client found, each with the test that showed it.
@Suite("Defects found by review of the client", .timeLimit(.minutes(1)))
struct ReviewDefectTests {
    @Test("a withdrawn message fails its waiting send at once, and a flush waiting for the outbox ends when it empties")
    func withdrawSettlesWaiters() async throws {
        // Offline (nothing behind the proxy): nothing is ever sent, so both messages can be withdrawn.
        try await TCPProxy.withProxy { proxy in
            let configuration = testConfiguration(proxy.baseURL, token: "sb_whoever") {
                $0.outbox.maxInFlight = 1
                $0.shutdownFlushTimeout = .zero
            }
            try await ChatClient.withClient(configuration: configuration, logger: testLogger("withdraw")) { client in
                let first = Task { try await client.send("A", to: "r1", clientId: "a") }
                let second = Task { try await client.send("B", to: "r1", clientId: "b") }
                try await waitUntil { client.pendingMessages.count == 2 }
                #expect(client.withdraw("b"))
                // B's sender hears at once that it will never be stored (deliveryTimeout is nil: it would wait forever).
                let sent = try await outcome(of: second)
                #expect(throws: ClientError.self) { try sent.get() }
                if case .failure(let error as ClientError) = sent {
                    #expect(error.code == .shutdown)
                    #expect(error.message.contains("withdrawn"))
                }
                #expect(client.pendingMessages.map(\.clientId) == ["a"])

                // A flush waiting for the outbox to drain ends when the last message is withdrawn.
                let flushing = Task { await client.flush(timeout: .seconds(120)) }
                try await waitUntil { client.state.withLock { $0.waiters.isWaiting(for: .flush) } }
                #expect(client.withdraw("a"))
                _ = try await outcome(of: flushing)
                let firstOutcome = try await outcome(of: first)
                #expect(throws: ClientError.self) { try firstOutcome.get() }
                #expect(client.pendingMessages.isEmpty)
            }
        }
    }
}

/// Waits until `condition` holds, looking again at each turn of the scheduler; fails after `timeout`.
func waitUntil(_ timeout: Duration = .seconds(10), _ condition: @escaping @Sendable () -> Bool) async throws {
    try await withTimeout(timeout) {
        while !condition() {
            try Task.checkCancellation()
            await Task.yield()
        }
    }
}

/// The outcome of `task`; after `timeout` the task is cancelled (so that nothing is left waiting) and this fails.
func outcome<Value: Sendable>(of task: Task<Value, some Error>, within timeout: Duration = .seconds(10)) async throws -> Result<Value, any Error> {
    try await withTimeout(timeout) {
        await withTaskCancellationHandler {
            await task.result.mapError { $0 as any Error }
        } onCancel: {
            task.cancel()
        }
    }
}
