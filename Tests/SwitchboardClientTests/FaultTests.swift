import Foundation
import SwitchboardClient
import SwitchboardProtocol
import SwitchboardTesting
import Testing

@Suite("The client through failures: restarts, cut and black-holed connections, refused upgrades, revoked tokens", .timeLimit(.minutes(1)))
struct FaultTests {
    @Test("the server is killed and restarted while messages flow both ways: each is stored once and received once, in order")
    func serverRestart() async throws {
        let path = try TestServer.temporaryDatabasePath()
        let (alice, bob, room) = try await TestServer.withServer(databasePath: path) { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("general", token: alice.token, members: [bob.user.id])
            return (alice, bob, room)
        }
        try await TCPProxy.withProxy { proxy in
            let aliceConfiguration = testConfiguration(proxy.baseURL, token: alice.token)
            let bobConfiguration = testConfiguration(proxy.baseURL, token: bob.token)
            try await ChatClient.withClient(configuration: aliceConfiguration, logger: testLogger("alice")) { aliceClient in
                try await ChatClient.withClient(configuration: bobConfiguration, logger: testLogger("bob")) { bobClient in
                    let aliceReceived = aliceClient.messages(in: room.id)
                    let bobReceived = bobClient.messages(in: room.id)
                    let bobEarly = bobClient.messages(in: room.id)
                    let statusesAtCut = Locked<[AsyncStream<ConnectionStatus>]>([])

                    try await TestServer.withServer(databasePath: path) { server in
                        proxy.setTarget(port: server.port)
                        try await aliceClient.subscribe(to: room.id, after: 0)
                        try await bobClient.subscribe(to: room.id, after: 0)
                        for index in 1...10 {
                            try aliceClient.enqueue("alice \(index)", to: room.id)
                            try bobClient.enqueue("bob \(index)", to: room.id)
                        }
                        // Kill it mid-flow: connections cut without a close frame, then the server goes.
                        _ = try await collect(bobEarly, count: 4)
                        statusesAtCut.set([aliceClient.statusUpdates(), bobClient.statusUpdates()])
                        proxy.setTarget(port: nil)
                        proxy.cutAll()
                    }
                    // While it is down, both keep sending.
                    for index in 11...20 {
                        try aliceClient.enqueue("alice \(index)", to: room.id)
                        try bobClient.enqueue("bob \(index)", to: room.id)
                    }
                    // Both have lost the connection, then tried and failed to reach the dead server at least once.
                    for statuses in statusesAtCut.get() {
                        _ = try await collect(statuses) { seen in
                            seen.filter { if case .reconnecting = $0 { true } else { false } }.count >= 2
                        }
                    }
                    #expect(aliceClient.pendingMessages.count >= 10)

                    try await TestServer.withServer(databasePath: path) { server in
                        proxy.setTarget(port: server.port)
                        let bobGot = try await collect(bobReceived, count: 40)
                        let aliceGot = try await collect(aliceReceived, count: 40)
                        try expectContiguous(bobGot)
                        try expectContiguous(aliceGot)
                        #expect(bobGot == aliceGot)
                        let expected = Set((1...20).flatMap { ["alice \($0)", "bob \($0)"] })
                        #expect(Set(bobGot.map(\.content)) == expected)
                        // Each sender's messages are stored in the order they were queued.
                        let aliceOrder = bobGot.filter { $0.userId == alice.user.id }.map(\.content)
                        #expect(aliceOrder == (1...20).map { "alice \($0)" })
                        let bobOrder = bobGot.filter { $0.userId == bob.user.id }.map(\.content)
                        #expect(bobOrder == (1...20).map { "bob \($0)" })
                        let stored = try await bobClient.history(in: room.id, limit: 200)
                        #expect(stored.messages.count == 40)
                        #expect(aliceClient.pendingMessages.isEmpty)
                        #expect(bobClient.pendingMessages.isEmpty)
                    }
                }
            }
        }
    }

    @Test("a cut connection: the client reconnects and recovers what it missed")
    func cutConnection() async throws {
        try await TestServer.withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("general", token: alice.token, members: [bob.user.id])
            let aliceSocket = try await server.connect(token: alice.token)
            try await TCPProxy.withProxy(targetPort: server.port) { proxy in
                try await ChatClient.withClient(configuration: testConfiguration(proxy.baseURL, token: bob.token), logger: testLogger("bob")) { client in
                    let received = client.messages(in: room.id)
                    try await client.subscribe(to: room.id)
                    try await aliceSocket.sendMessage("before", roomId: room.id)
                    _ = try await collect(received, count: 1)
                    let reconnected = client.statusUpdates()
                    proxy.setTarget(port: nil)
                    proxy.cutAll()
                    _ = try await collect(reconnected) { $0.contains { if case .reconnecting = $0 { true } else { false } } }
                    for index in 1...5 { try await aliceSocket.sendMessage("missed \(index)", roomId: room.id) }
                    proxy.setTarget(port: server.port)
                    let recovered = try await collect(received, count: 5)
                    #expect(recovered.map(\.content) == (1...5).map { "missed \($0)" })
                    try expectContiguous(recovered, from: 2)
                    #expect(client.status == .connected)
                }
            }
            await aliceSocket.close()
        }
    }

    @Test("a black-holed connection: the heartbeat finds it dead, the client reconnects and recovers")
    func blackHole() async throws {
        try await TestServer.withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("general", token: alice.token, members: [bob.user.id])
            let aliceSocket = try await server.connect(token: alice.token)
            try await TCPProxy.withProxy(targetPort: server.port) { proxy in
                let configuration = testConfiguration(proxy.baseURL, token: bob.token) {
                    $0.heartbeat.interval = .milliseconds(300)
                    $0.heartbeat.timeout = .milliseconds(300)
                }
                try await ChatClient.withClient(configuration: configuration, logger: testLogger("bob")) { client in
                    let received = client.messages(in: room.id)
                    try await client.subscribe(to: room.id)
                    let statuses = client.statusUpdates()
                    let acceptedBefore = proxy.acceptedCount
                    proxy.blackHoleAll()
                    for index in 1...3 { try await aliceSocket.sendMessage("in the hole \(index)", roomId: room.id) }
                    // The TCP connection is still open; only silence tells.
                    let sequence = try await collect(statuses) { $0.count >= 3 && $0.last == .connected }
                    #expect(sequence.first == .connected)
                    #expect(sequence.contains { if case .reconnecting = $0 { true } else { false } })
                    #expect(proxy.acceptedCount > acceptedBefore)
                    try await aliceSocket.sendMessage("after", roomId: room.id)
                    let got = try await collect(received, count: 4)
                    #expect(got.map(\.content) == ["in the hole 1", "in the hole 2", "in the hole 3", "after"])
                    try expectContiguous(got)
                }
            }
            await aliceSocket.close()
        }
    }

    @Test("upgrades refused by a proxy: the client long-polls, sends and receives, and returns to the WebSocket later")
    func refusedUpgrade() async throws {
        try await TestServer.withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("general", token: alice.token, members: [bob.user.id])
            let aliceSocket = try await server.connect(token: alice.token)
            try await aliceSocket.join(room.id)
            try await TCPProxy.withProxy(targetPort: server.port) { proxy in
                proxy.refuseWebSocketUpgrades()
                let configuration = testConfiguration(proxy.baseURL, token: bob.token) {
                    $0.fallback.retryWebSocketEvery = .seconds(1)
                    $0.fallback.pollTimeout = .milliseconds(500)
                }
                try await ChatClient.withClient(configuration: configuration, logger: testLogger("bob")) { client in
                    let received = client.messages(in: room.id)
                    try await client.waitForStatus { $0 == .polling }
                    #expect(proxy.refusedUpgradeCount >= 2)
                    try await client.subscribe(to: room.id)

                    try await aliceSocket.sendMessage("to bob", roomId: room.id)
                    let got = try await collect(received, count: 1)
                    #expect(got.map(\.content) == ["to bob"])

                    let sent = try await client.send("from bob", to: room.id)
                    #expect(sent.seq == 2)
                    let echoed = try await aliceSocket.next { $0.type == "message" && $0.data?["content"]?.stringValue == "from bob" }
                    #expect(echoed.userId == bob.user.id)
                    let own = try await collect(received, count: 1)
                    #expect(own == [sent])

                    // Upgrades work again: the client notices on its next try.
                    proxy.refuseWebSocketUpgrades(false)
                    try await client.waitForStatus { $0 == .connected }
                    try await aliceSocket.sendMessage("over the socket", roomId: room.id)
                    let after = try await collect(received, count: 1)
                    #expect(after.map(\.seq) == [3])
                }
            }
            await aliceSocket.close()
        }
    }

    @Test("a revoked token: one final failed status, and no retry loop")
    func revokedToken() async throws {
        try await TestServer.withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("general", token: alice.token)
            let created = try await server.request(.POST, "/api/tokens", token: alice.token, json: CreateTokenRequest(name: "bot"))
                .decode(CreateTokenResponse.self, expecting: 201)
            try await TCPProxy.withProxy(targetPort: server.port) { proxy in
                try await ChatClient.withClient(configuration: testConfiguration(proxy.baseURL, token: created.token), logger: testLogger("bot")) { client in
                    let statuses = client.statusUpdates()
                    let received = client.messages(in: room.id)
                    try await client.subscribe(to: room.id)
                    let revoked = try await server.request(.DELETE, "/api/tokens/\(created.id)", token: alice.token)
                    #expect(revoked.status == 204)
                    // The client stops: every stream ends, after exactly one failed status.
                    let all = try await collectAll(statuses)
                    #expect(all.filter { if case .failed = $0 { true } else { false } }.count == 1)
                    guard case .failed(let reason)? = all.last else {
                        Issue.record("the last status is \(String(describing: all.last))")
                        return
                    }
                    #expect(reason.code == .unauthorized)
                    _ = try await collectAll(received)
                    let accepted = proxy.acceptedCount
                    await #expect {
                        try await client.send("too late", to: room.id)
                    } throws: { error in
                        (error as? ClientError)?.code == .unauthorized
                    }
                    #expect(proxy.acceptedCount == accepted)
                    #expect(client.status == .failed(reason))
                }
            }
        }
    }

    @Test("an unknown token at start: failed at once, without reconnecting")
    func unknownToken() async throws {
        try await TestServer.withServer { server in
            try await TCPProxy.withProxy(targetPort: server.port) { proxy in
                try await ChatClient.withClient(configuration: testConfiguration(proxy.baseURL, token: "sb_unknown"), logger: testLogger("nobody")) { client in
                    let all = try await collectAll(client.statusUpdates())
                    #expect(all.count <= 2)
                    guard case .failed(let reason)? = all.last else {
                        Issue.record("the last status is \(String(describing: all.last))")
                        return
                    }
                    #expect(reason.code == .unauthorized)
                    #expect(!all.contains { if case .reconnecting = $0 { true } else { false } })
                    #expect(proxy.acceptedCount <= 1)
                }
            }
        }
    }
}

@Suite("The client against a peer that never answers", .timeLimit(.minutes(1)))
struct HangingPeerTests {
    @Test("an upgrade that is never answered is abandoned after the connect timeout, and the client comes back")
    func hungUpgrade() async throws {
        try await TestServer.withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("general", token: alice.token)
            try await TCPProxy.withProxy(targetPort: server.port) { proxy in
                // Short enough that hung attempts are given up quickly, long enough that a real one
                // succeeds while the whole suite runs at once on 2 cores (300 ms did not, at times).
                let configuration = testConfiguration(proxy.baseURL, token: alice.token) {
                    $0.connectTimeout = .seconds(1)
                    $0.requestTimeout = .seconds(2)
                }
                try await ChatClient.withClient(configuration: configuration, logger: testLogger("hung-alice")) { client in
                    let received = client.messages(in: room.id)
                    try await client.subscribe(to: room.id)
                    let statuses = client.statusUpdates()
                    proxy.holdNewConnections()
                    proxy.cutAll()
                    try client.enqueue("sent while the network hangs", to: room.id)
                    // Attempts that hang are given up, one after another: the attempt count grows.
                    _ = try await collect(statuses) { seen in
                        seen.contains { if case .reconnecting(let attempt, _) = $0, attempt >= 3 { true } else { false } }
                    }
                    proxy.holdNewConnections(false)
                    try await client.waitForStatus { $0 == .connected }
                    let got = try await collect(received, count: 1)
                    #expect(got.map(\.content) == ["sent while the network hangs"])
                }
            }
        }
    }

    @Test("disconnect returns promptly while an upgrade hangs, even with a long connect timeout")
    func disconnectDuringHungUpgrade() async throws {
        try await TestServer.withServer { server in
            let alice = try await server.register("alice")
            try await TCPProxy.withProxy(targetPort: server.port) { proxy in
                let configuration = testConfiguration(proxy.baseURL, token: alice.token) {
                    $0.connectTimeout = .seconds(60)
                    $0.requestTimeout = .seconds(60)
                    $0.shutdownFlushTimeout = .zero
                }
                let clock = ContinuousClock()
                let elapsed = try await clock.measure {
                    try await ChatClient.withClient(configuration: configuration, logger: testLogger("hung-disconnect")) { client in
                        try await client.waitForStatus { $0 == .connected }
                        let accepted = proxy.acceptedCount
                        proxy.holdNewConnections()
                        proxy.cutAll()
                        // The next WebSocket attempt is accepted and then hangs in its upgrade.
                        await proxy.waitUntilAccepted(accepted + 1)
                        let report = await client.disconnect()
                        #expect(report.isClean)
                        #expect(client.status == .disconnected)
                    }
                }
                #expect(elapsed < .seconds(10))
            }
        }
    }
}
