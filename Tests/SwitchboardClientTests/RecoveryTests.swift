import Foundation
import SwitchboardClient
import SwitchboardProtocol
import SwitchboardTesting
import Testing

@Suite("Recovery of missed messages", .timeLimit(.minutes(1)))
struct RecoveryTests {
    @Test("more missed messages than the replay cap are all recovered over HTTP, in order, while live ones keep coming")
    func overTheReplayCap() async throws {
        let configuration = TestServer.testConfiguration {
            $0.limits.replayCap = 5
            $0.messageBurst = 1000
            $0.messagesPerSecond = 1000
        }
        try await TestServer.withServer(configuration: configuration) { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("general", token: alice.token, members: [bob.user.id])
            let aliceSocket = try await server.connect(token: alice.token)
            try await TCPProxy.withProxy(targetPort: server.port) { proxy in
                let bobConfiguration = testConfiguration(proxy.baseURL, token: bob.token) { $0.historyPageSize = 7 }
                try await ChatClient.withClient(configuration: bobConfiguration, logger: testLogger("bob")) { client in
                    let received = client.messages(in: room.id)
                    try await client.subscribe(to: room.id)
                    try await aliceSocket.sendMessage("first", roomId: room.id)
                    _ = try await collect(received, count: 1)

                    proxy.setTarget(port: nil)
                    proxy.cutAll()
                    try await client.waitForStatus {
                        if case .reconnecting = $0 { return true }
                        return false
                    }
                    for index in 1...30 { try await aliceSocket.sendMessage("missed \(index)", roomId: room.id) }
                    proxy.setTarget(port: server.port)
                    try await client.waitForStatus { $0 == .connected }
                    for index in 1...5 { try await aliceSocket.sendMessage("live \(index)", roomId: room.id) }

                    let recovered = try await collect(received, count: 35)
                    try expectContiguous(recovered, from: 2)
                    #expect(recovered.map(\.content) == (1...30).map { "missed \($0)" } + (1...5).map { "live \($0)" })
                    #expect(client.lastSeq(in: room.id) == 36)
                }
            }
            await aliceSocket.close()
        }
    }

    @Test("subscribing after a seq replays the history from there, even past the cap")
    func subscribeAfter() async throws {
        let configuration = TestServer.testConfiguration { $0.limits.replayCap = 3 }
        try await TestServer.withServer(configuration: configuration) { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("general", token: alice.token)
            let socket = try await server.connect(token: alice.token)
            for index in 1...10 { try await socket.sendMessage("old \(index)", roomId: room.id) }
            await socket.close()
            try await ChatClient.withClient(configuration: testConfiguration(server.baseURL, token: alice.token), logger: testLogger("alice")) { client in
                let received = client.messages(in: room.id)
                try await client.subscribe(to: room.id, after: 4)
                let got = try await collect(received, count: 6)
                try expectContiguous(got, from: 5)
            }
        }
    }
}
