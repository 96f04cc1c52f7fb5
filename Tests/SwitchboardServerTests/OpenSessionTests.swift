import Logging
import NIOCore
import Synchronization
import SwitchboardProtocol
import SwitchboardSQLite
import SwitchboardStore
import SwitchboardTesting
import Testing

@testable import SwitchboardServer

/// A sink that keeps what it is sent, for tests that drive the server core without a socket.
final class RecordingSink: EventSink {
    private let received = Mutex<[Envelope<JSONValue>]>([])
    private let ends = Mutex<[SessionEnd]>([])

    func send(_ frame: OutgoingFrame) {
        let envelope = try! Wire.decode(Envelope<JSONValue>.self, from: frame.json.readableBytesView)
        received.withLock { $0.append(envelope) }
    }

    func close(_ end: SessionEnd) { ends.withLock { $0.append(end) } }

    var envelopes: [Envelope<JSONValue>] { received.withLock { $0 } }
    var closedWith: [SessionEnd] { ends.withLock { $0 } }
}

@Suite("ChatService.openSession: one entry point for both transports", .timeLimit(.minutes(1)))
struct OpenSessionTests {
    @Test("a session is registered with its user's rooms: presence goes to room-mates, a polling session follows every room, closing announces offline")
    func openAndClose() async throws {
        let logger = Logger(label: "switchboard.test")
        // On the backend the suite runs on (SWITCHBOARD_TEST_DATABASE), as TestServer's are.
        try await TestDatabase.selected.withStore(logger: logger) { store in
            let alice = try await store.createUser(NewUser(username: "alice", displayName: "alice", passwordHash: nil, isBot: false, now: 0))
            let bob = try await store.createUser(NewUser(username: "bob", displayName: "bob", passwordHash: nil, isBot: false, now: 0))
            let room = try await store.createRoom(NewRoom(name: "general", isPublic: false, creatorId: alice.id, memberIds: [bob.id], now: 0))
            let metrics = ServerMetrics()
            let hub = Hub(configuration: ServerConfiguration(), metrics: metrics)
            let service = ChatService(configuration: ServerConfiguration(), store: store, hub: hub, metrics: metrics, logger: logger)

            let aliceSink = RecordingSink()
            let aliceSession = try await service.openSession(Identity(user: alice, tokenId: "t1", tokenExpiresAt: nil), sink: aliceSink)
            #expect(!hub.isSubscribed(aliceSession, to: room.id))

            let bobSink = RecordingSink()
            let bobSession = try await service.openSession(Identity(user: bob, tokenId: "t2", tokenExpiresAt: nil), sink: bobSink, followsAllRooms: true)
            #expect(hub.isSubscribed(bobSession, to: room.id))
            #expect(aliceSink.envelopes.map(\.type) == [.presence])
            #expect(aliceSink.envelopes.first?.userId == bob.id)

            service.closeSession(bobSession)
            service.closeSession(bobSession)
            #expect(aliceSink.envelopes.map(\.type) == [.presence, .presence])
            #expect(aliceSink.envelopes.last?.data == ["status": "offline"])

            hub.close(tokens: ["t1"], .tokenRevoked)
            #expect(aliceSink.closedWith == [.tokenRevoked])
            service.closeSession(aliceSession)
            #expect(hub.census().connections == 0)
        }
    }
}
