import Foundation
import SwitchboardClient
import SwitchboardProtocol
import SwitchboardTesting
import Testing

@Suite("Edge cases of the client", .timeLimit(.minutes(1)))
struct EdgeCaseTests {
    @Test("a message larger than the server accepts is refused at send, without a reconnection; the next one goes")
    func oversizedMessage() async throws {
        try await TestServer.withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("general", token: alice.token)
            try await ChatClient.withClient(configuration: testConfiguration(server.baseURL, token: alice.token), logger: testLogger("alice")) { client in
                try await client.waitForStatus { $0 == .connected }
                await #expect {
                    try await client.send(String(repeating: "a", count: 70_000), to: room.id)
                } throws: { error in
                    (error as? ClientError)?.code == .invalid
                }
                #expect(client.pendingMessages.isEmpty)
                let next = try await client.send("small", to: room.id)
                #expect(next.seq == 1)
                #expect(client.status == .connected)
            }
        }
    }

    @Test("a clientId waiting for another message is refused; the same message again is not queued twice")
    func clientIdInUse() async throws {
        try await TCPProxy.withProxy { proxy in
            let configuration = testConfiguration(proxy.baseURL, token: "sb_unused") { $0.shutdownFlushTimeout = .milliseconds(50) }
            try await ChatClient.withClient(configuration: configuration, logger: testLogger("offline")) { client in
                try client.enqueue("report", to: "r_one", clientId: "nightly")
                try client.enqueue("report", to: "r_one", clientId: "nightly")
                #expect(throws: ClientError.self) { try client.enqueue("report", to: "r_two", clientId: "nightly") }
                #expect(throws: ClientError.self) { try client.enqueue("other", to: "r_one", clientId: "nightly") }
                #expect(client.pendingMessages.map(\.roomId) == ["r_one"])
            }
        }
    }

    @Test("unsubscribing and subscribing again at once keeps live messages coming")
    func quickResubscribe() async throws {
        try await TestServer.withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("general", token: alice.token, members: [bob.user.id])
            let aliceSocket = try await server.connect(token: alice.token)
            try await ChatClient.withClient(configuration: testConfiguration(server.baseURL, token: bob.token), logger: testLogger("bob")) { client in
                let messages = client.messages(in: room.id)
                try await client.subscribe(to: room.id)
                for round in 1...5 {
                    await client.unsubscribe(from: room.id)
                    try await client.subscribe(to: room.id)
                    try await aliceSocket.sendMessage("round \(round)", roomId: room.id)
                    let got = try await collect(messages, count: 1)
                    #expect(got.map(\.content) == ["round \(round)"])
                }
            }
            await aliceSocket.close()
        }
    }

    @Test("disconnect goes from connected to disconnected, never through reconnecting")
    func cleanDisconnect() async throws {
        try await TestServer.withServer { server in
            let alice = try await server.register("alice")
            for _ in 1...5 {
                let client = try ChatClient(configuration: testConfiguration(server.baseURL, token: alice.token), logger: testLogger("alice"))
                let statuses = client.statusUpdates()
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { await client.run() }
                    try await client.waitForStatus { $0 == .connected }
                    await client.disconnect()
                    try await group.waitForAll()
                }
                let seen = try await collectAll(statuses)
                #expect(seen.last == .disconnected)
                #expect(!seen.contains { if case .reconnecting = $0 { true } else { false } })
            }
        }
    }

    @Test("with a password login still waiting for the server, disconnect ends the calls that wait for it")
    func waitingForLoginAtDisconnect() async throws {
        try await TCPProxy.withProxy { proxy in
            var configuration = testConfiguration(proxy.baseURL, token: "")
            configuration.credentials = .password(username: "alice", password: "password123")
            let client = try ChatClient(configuration: configuration, logger: testLogger("alice"))
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await client.run() }
                group.addTask {
                    await #expect {
                        _ = try await client.rooms()
                    } throws: { error in
                        (error as? ClientError)?.code == .shutdown
                    }
                }
                try await client.waitForStatus {
                    if case .reconnecting = $0 { return true }
                    return false
                }
                await client.disconnect()
                try await group.waitForAll()
            }
        }
    }
}
