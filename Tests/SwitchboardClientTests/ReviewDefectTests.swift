import Foundation
import SwitchboardProtocol
import SwitchboardTesting
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

    @Test("disconnect from inside a loop over a subscription far behind returns, and the stream ends after what it held")
    func disconnectWhileStreamFull() async throws {
        try await TestServer.withServer { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("general", token: alice.token, members: [bob.user.id])
            let configuration = testConfiguration(server.baseURL, token: bob.token) { $0.eventBuffers.messages = 4 }
            let socket = try await server.connect(token: alice.token)
            // Run by hand rather than in withClient, so that a disconnect that never returns fails the test instead of hanging it.
            let client = try ChatClient(configuration: configuration, logger: testLogger("bob"))
            let running = Task { await client.run() }
            do {
                let subscription = try await client.subscribe(to: room.id)
                for index in 1...30 { try await socket.sendMessage("m\(index)", roomId: room.id) }
                // The stream holds 4, the dispatcher waits to hand over a fifth, and the client's own queue is full:
                // the socket's reader waits for room.
                try await waitUntil(.seconds(20)) { client.bus.isFull }
                let first = try await collect(subscription.messages, count: 1)
                #expect(first.map(\.seq) == [1])
                // As an application does in its loop: stop, with the stream far behind.
                let report = try await withTimeout(.seconds(10)) { await client.disconnect() }
                #expect(report.isClean)
                #expect(client.status == .disconnected)
                // The stream hands over what it held, in order, then ends.
                let rest = try await collectAll(subscription.messages, timeout: .seconds(10))
                try expectContiguous(rest, from: 2)
                #expect(rest.count < 30)
                _ = try await outcome(of: running)
            } catch {
                running.cancel()
                throw error
            }
            await socket.close()
        }
    }

    @Test("a task waiting for room in a full queue ends when cancelled; a push waiting ends when the producer stops waiting")
    func queueWaitsEnd() async throws {
        let queue = EventQueue<Int>(capacity: 1, lossyCapacity: 1)
        queue.pushNow(1)
        let waiting = Task { await queue.waitForSpace() }
        waiting.cancel()
        _ = try await outcome(of: waiting)
        let pushing = Task { await queue.push(2, lossy: false) }
        queue.stopWaiting()
        _ = try await outcome(of: pushing)
        // Nothing was dropped: the consumer gets both, past the capacity, then the end.
        queue.finish()
        #expect(await queue.next() == 1)
        #expect(await queue.next() == 2)
        #expect(await queue.next() == nil)
    }

    @Test("a join ack that cannot be read refuses the subscription with badResponse, rather than leave subscribe waiting")
    func unreadableJoinAck() async throws {
        let client = try ChatClient(configuration: testConfiguration("http://127.0.0.1:9", token: "sb_x"), logger: testLogger("join-ack"))
        let subscribing = Task { try await client.subscribe(to: "r1", after: 0) }
        try await waitUntil { client.state.withLock { $0.waiters.isWaiting(for: .join(roomId: "r1")) } }
        let generation = try #require(client.state.withLock { $0.subscriptions.rooms["r1"]?.generation })
        client.withState { $0.requests.pending["j1"] = ChatClient.PendingRequest(link: 1, kind: .join(roomId: "r1", generation: generation)) }
        // An ack without `room`: the join cannot be made sense of.
        client.handleFrame(Array(#"{"type":"ack","ref":"j1","roomId":"r1","data":{"lastSeq":3},"timestamp":1}"#.utf8), link: 1)
        let subscribed = try await outcome(of: subscribing)
        #expect(throws: ClientError.self) { try subscribed.get() }
        if case .failure(let error as ClientError) = subscribed { #expect(error.code == .badResponse) }
        #expect(client.subscribedRooms.isEmpty)
        // The client does not run: its events wait in its own queue, undispatched.
        let seen = try await collect(client.bus.stream(), timeout: .seconds(10)) { $0.contains { if case .subscriptionEnded = $0.event { true } else { false } } }
        #expect(seen.contains { if case .subscriptionEnded("r1", let error) = $0.event { error.code == .badResponse } else { false } })
    }

    @Test("a join ack for another room than the one asked for refuses the subscription it answers")
    func joinAckForAnotherRoom() async throws {
        let client = try ChatClient(configuration: testConfiguration("http://127.0.0.1:9", token: "sb_x"), logger: testLogger("join-ack"))
        let subscribing = Task { try await client.subscribe(to: "r1", after: 0) }
        try await waitUntil { client.state.withLock { $0.waiters.isWaiting(for: .join(roomId: "r1")) } }
        let generation = try #require(client.state.withLock { $0.subscriptions.rooms["r1"]?.generation })
        client.withState { $0.requests.pending["j1"] = ChatClient.PendingRequest(link: 1, kind: .join(roomId: "r1", generation: generation)) }
        let other = Room(id: "r2", name: "other", kind: .group, isPublic: false, createdAt: 0, lastSeq: 7, members: [])
        let ack = Envelope(type: .ack, roomId: "r1", data: JoinAnswer(room: other, lastSeq: 7, replayed: 0, truncated: false), ref: "j1")
        client.handleFrame(try Wire.encode(ack), link: 1)
        let subscribed = try await outcome(of: subscribing)
        if case .failure(let error as ClientError) = subscribed {
            #expect(error.code == .badResponse)
        } else {
            Issue.record("subscribe did not fail: \(subscribed)")
        }
        #expect(client.subscribedRooms.isEmpty)
    }

    @Test("following every room: a room event during the listing does not skip what the position store says is unhandled")
    func roomEventDuringListing() async throws {
        try await TestServer.withServer { server in
            let alice = try await server.register("alice")
            let bot = try await server.register("bot")
            let room = try await server.createRoom("general", token: alice.token, members: [bot.user.id])
            let socket = try await server.connect(token: alice.token)
            for index in 1...3 { try await socket.sendMessage("m\(index)", roomId: room.id) }
            // The bot handled m1 before it restarted; the store answers only when the test lets it.
            let store = GatedPositionStore([room.id: 1])
            let configuration = testConfiguration(server.baseURL, token: bot.token) { $0.positions = store }
            try await ChatClient.withClient(configuration: configuration, logger: testLogger("bot")) { client in
                let events = client.followAllRooms()
                // The listing has the rooms and asks the store where to start.
                try await withTimeout(.seconds(20)) { await store.asked.wait() }
                // A message meanwhile: the server tells the connection, not subscribed yet, with a `room` event.
                try await socket.sendMessage("m4", roomId: room.id)
                _ = try await collect(events) { $0.contains { if case .room(let data) = $0 { data.room.lastSeq == 4 } else { false } } }
                store.answer.fire()
                let seen = try await collect(events) { $0.contains { if case .ready = $0 { true } else { false } } }
                let messages = seen.compactMap { if case .message(let message) = $0 { message } else { nil } }
                #expect(messages.map(\.seq) == [2, 3, 4])
                #expect(!seen.contains { if case .gap = $0 { true } else { false } })
            }
            await socket.close()
        }
    }

    @Test("following every room: a listing that keeps failing does not hold up the joins of the connection")
    func failingListingDoesNotBlockJoins() async throws {
        try await TestServer.withServer { server in
            let alice = try await server.register("alice")
            let bot = try await server.register("bot")
            let room = try await server.createRoom("general", token: alice.token, members: [bot.user.id])
            let store = FailingPositionStore()
            let configuration = testConfiguration(server.baseURL, token: bot.token) { $0.positions = store }
            try await ChatClient.withClient(configuration: configuration, logger: testLogger("bot")) { client in
                _ = client.followAllRooms()
                // The listing cannot read the positions, and will try again and again.
                try await withTimeout(.seconds(20)) { await store.asked.wait() }
                let subscribing = Task { try await client.subscribe(to: room.id, after: 0) }
                let subscription = try await outcome(of: subscribing).get()
                #expect(subscription.id == room.id)
                let socket = try await server.connect(token: alice.token)
                let sent = try await socket.sendMessage("still joined", roomId: room.id)
                #expect(try await collect(subscription.messages, count: 1, timeout: .seconds(10)).map(\.id) == [sent.id])
                await socket.close()
            }
        }
    }
}

/// A position store that cannot be read, and says when it was first asked.
final class FailingPositionStore: PositionStore {
    let asked = OneShot()

    func position(in roomId: String) async throws -> Int? {
        asked.fire()
        throw TestFailure("the position store is down")
    }

    func setPosition(_ seq: Int, in roomId: String) async throws {
        throw TestFailure("the position store is down")
    }
}

/// Waits until `condition` holds, looking again every few milliseconds; fails after `timeout`.
func waitUntil(_ timeout: Duration = .seconds(10), _ condition: @escaping @Sendable () -> Bool) async throws {
    try await withTimeout(timeout) {
        // Polled every few milliseconds, not spun: the suite runs on two cores.
        while !condition() {
            try await Task.sleep(for: .milliseconds(5))
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

/// A position store that says it was asked, and answers only once told to.
final class GatedPositionStore: PositionStore {
    let asked = OneShot()
    let answer = OneShot()
    private let positions: MemoryPositionStore

    init(_ positions: [String: Int]) {
        self.positions = MemoryPositionStore(positions)
    }

    func position(in roomId: String) async throws -> Int? {
        asked.fire()
        await answer.wait()
        return try await positions.position(in: roomId)
    }

    func setPosition(_ seq: Int, in roomId: String) async throws {
        try await positions.setPosition(seq, in: roomId)
    }
}
