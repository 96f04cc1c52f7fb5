import Foundation
import PostgresNIO
import Synchronization
import SwitchboardProtocol
import SwitchboardStore
import SwitchboardTesting
import Testing

@testable import SwitchboardPostgres

/// The PostgreSQL group commit's queue, without a database: when a commit may start, when the
/// drain task parks, wakes and stops.
@Suite("PostgreSQL append queue", .timeLimit(.minutes(1)))
struct AppendQueueTests {
    func call(_ count: Int = 1) -> PendingAppend {
        let message = NewMessage(roomId: "r", userId: "u", content: "m", clientId: nil, replyTo: nil, meta: nil, now: 1)
        return PendingAppend(messages: Array(repeating: message, count: count), completion: { _ in })
    }

    func isCommit(_ step: AppendQueue.Step, calls: Int) -> Bool {
        if case .commit(let batch) = step { return batch.count == calls }
        return false
    }

    func isWait(_ step: AppendQueue.Step) -> Bool {
        if case .wait = step { return true }
        return false
    }

    @Test func commitsStartUpToTheLimitThenTheDrainWaitsForOneToEnd() async {
        var queue = AppendQueue(maxBatchSize: 2, maxConcurrentCommits: 2)
        guard case .startDrain = queue.submit(call()) else { Issue.record("the first call starts the drain"); return }
        for _ in 0..<4 { _ = queue.submit(call()) }
        let first = queue.nextStep()
        let second = queue.nextStep()
        let third = queue.nextStep()
        #expect(isCommit(first, calls: 2))
        #expect(isCommit(second, calls: 2))
        #expect(isWait(third), "two commits in flight: the fifth call waits")
        await withCheckedContinuation { (drain: CheckedContinuation<Void, Never>) in
            let parked = queue.park(drain)
            #expect(parked == nil, "nothing to do yet: the drain stays parked")
            if case .wake = queue.submit(call()) { Issue.record("a call while both slots are taken does not wake the drain") }
            let woken = queue.commitEnded()
            #expect(woken != nil, "a commit that ends frees a slot: the drain is woken")
            woken?.resume()
        }
        let fourth = queue.nextStep()
        #expect(isCommit(fourth, calls: 2))
    }

    @Test func aBigCallIsNeverSplitAndACallArrivingWhileParkedWakesTheDrain() async {
        var queue = AppendQueue(maxBatchSize: 2, maxConcurrentCommits: 2)
        _ = queue.submit(call(5))
        _ = queue.submit(call(1))
        let big = queue.nextStep()
        let small = queue.nextStep()
        #expect(isCommit(big, calls: 1), "one call of 5 messages alone")
        #expect(isCommit(small, calls: 1))
        let notParked = queue.commitEnded()
        let next = queue.nextStep()
        #expect(notParked == nil)
        #expect(isWait(next), "a commit is still in flight: the drain does not stop")
        await withCheckedContinuation { (drain: CheckedContinuation<Void, Never>) in
            let parked = queue.park(drain)
            #expect(parked == nil)
            guard case .wake(let woken) = queue.submit(call()) else { Issue.record("a call wakes the parked drain"); return drain.resume() }
            woken.resume()
        }
        let last = queue.nextStep()
        #expect(isCommit(last, calls: 1))
    }

    @Test func theDrainStopsOnlyWhenNothingIsQueuedOrInFlight() async {
        var queue = AppendQueue(maxBatchSize: 10, maxConcurrentCommits: 2)
        _ = queue.submit(call())
        let step = queue.nextStep()
        let closes = queue.close()
        let closesAgain = queue.close()
        #expect(isCommit(step, calls: 1))
        #expect(closes)
        #expect(!closesAgain, "closing twice does nothing")
        if case .refuse = queue.submit(call()) {} else { Issue.record("a closed queue refuses calls") }
        await withCheckedContinuation { (closer: CheckedContinuation<Void, Never>) in
            let waits = queue.waitUntilDrained(closer)
            let next = queue.nextStep()
            #expect(waits, "a commit in flight: close waits")
            #expect(isWait(next))
            _ = queue.commitEnded()
            guard case .stop(let waiters) = queue.nextStep() else { Issue.record("idle: the drain stops"); return closer.resume() }
            #expect(waiters.count == 1)
            for waiter in waiters { waiter.resume() }
        }
        #expect(!queue.isDraining)
    }
}

/// Group commits in flight together on PostgreSQL: each room numbered in call order, callers
/// answered in call order, duplicates found across commits, a failed commit failing only its callers.
@Suite("PostgreSQL group commits in flight together", .timeLimit(.minutes(1)))
struct PostgresGroupCommitTests {
    /// The order completions ran in, and a stream of them to wait on.
    final class Answers: Sendable {
        let outcomes = Mutex<[(label: String, result: Result<[AppendResult], any Error>)]>([])
        let (events, continuation) = AsyncStream<Void>.makeStream()

        func submit(_ label: String, _ message: NewMessage, to store: PostgresStore) {
            store.submitAppend([message]) { result in
                self.outcomes.withLock { $0.append((label, result)) }
                self.continuation.yield()
            }
        }

        func wait(for count: Int) async -> [(label: String, result: Result<[AppendResult], any Error>)] {
            var seen = outcomes.withLock { $0.count }
            var iterator = events.makeAsyncIterator()
            while seen < count, await iterator.next() != nil { seen = outcomes.withLock { $0.count } }
            return outcomes.withLock { $0 }
        }

        var labels: [String] { outcomes.withLock { $0.map(\.label) } }
    }

    func message(_ content: String, in room: Room, from user: User, clientId: String? = nil) -> NewMessage {
        NewMessage(roomId: room.id, userId: user.id, content: content, clientId: clientId, replyTo: nil, meta: nil, now: 1_000)
    }

    /// A store whose every call is a commit of its own, with several in flight.
    func withStore(_ body: (PostgresStore, PostgresStore.Configuration) async throws -> Void) async throws {
        try await PostgresTests().withDatabase { configuration in
            var configuration = configuration
            configuration.maxBatchSize = 1
            configuration.maxConcurrentCommits = 4
            let store = try await PostgresStore.open(configuration: configuration, logger: testLogger)
            do {
                try await body(store, configuration)
                try await store.close()
            } catch {
                try? await store.close()
                throw error
            }
        }
    }

    /// Holds `user`'s row locked on a connection of its own for the length of `body`, so that a
    /// commit storing a message of theirs stops at its INSERT (the foreign key's check), after it
    /// has numbered its rooms.
    func holdingUser(_ user: User, _ configuration: PostgresStore.Configuration, _ body: () async throws -> Void) async throws {
        try await PostgresStore.withConnection(configuration: configuration, logger: testLogger) { connection in
            try await connection.query("BEGIN", logger: testLogger)
            try await connection.query("SELECT id FROM users WHERE id = \(user.id) FOR UPDATE", logger: testLogger)
            do {
                try await body()
            } catch {
                _ = try? await connection.query("ROLLBACK", logger: testLogger)
                throw error
            }
            try await connection.query("ROLLBACK", logger: testLogger)
        }
    }

    /// Waits until `count` of the store's connections wait for a lock.
    func waitForLockWaiters(_ count: Int, _ store: PostgresStore) async throws {
        while try await store.read({ connection in
            try await connection.query(
                "SELECT count(*)::bigint FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
                logger: testLogger
            ).collect()[0].decode(Int.self)
        }) < count {
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    @Test func commitsInFlightAnswerInCallOrderAndAFailedOneFailsOnlyItsCaller() async throws {
        try await withStore { store, configuration in
            let ana = try await store.makeUser("ana")
            let bob = try await store.makeUser("bob")
            let x = try await store.makeRoom("X", creator: ana)
            let y = try await store.makeRoom("Y", creator: bob)
            let answers = Answers()
            try await holdingUser(ana, configuration) {
                answers.submit("x1", message("x1", in: x, from: ana), to: store)
                try await waitForLockWaiters(1, store)
                answers.submit("y1", message("y1", in: y, from: bob), to: store)
                // PostgreSQL refuses a NUL in text: this commit fails, between two good ones in its room.
                answers.submit("bad", message("bad\u{0}", in: y, from: bob), to: store)
                answers.submit("y2", message("y2", in: y, from: bob), to: store)
                // The commits after the held one are stored meanwhile, but not answered before it.
                while try await store.room(id: y.id)?.lastSeq != 2 { try await Task.sleep(for: .milliseconds(5)) }
                #expect(answers.labels.isEmpty)
            }
            let outcomes = await answers.wait(for: 4)
            #expect(outcomes.map(\.label) == ["x1", "y1", "bad", "y2"])
            let seqs = outcomes.map { (try? $0.result.get())?.first?.message.seq }
            #expect(seqs == [1, 1, nil, 2])
            #expect(try await store.history(roomId: y.id, after: nil, before: nil, limit: 10).messages.map(\.content) == ["y1", "y2"])
            #expect(try await store.history(roomId: x.id, after: nil, before: nil, limit: 10).messages.map(\.content) == ["x1"])
        }
    }

    @Test func aRepeatOfAMessageStillInFlightIsFoundOnceItCommits() async throws {
        try await withStore { store, configuration in
            let ana = try await store.makeUser("ana")
            let room = try await store.makeRoom("General", creator: ana)
            let answers = Answers()
            try await holdingUser(ana, configuration) {
                answers.submit("first", message("first", in: room, from: ana, clientId: "k"), to: store)
                try await waitForLockWaiters(1, store)
                // Waits for the room's row, held by the first commit until it ends.
                answers.submit("again", message("again", in: room, from: ana, clientId: "k"), to: store)
                try await waitForLockWaiters(2, store)
            }
            let outcomes = await answers.wait(for: 2)
            let first = try #require(try outcomes[0].result.get().first)
            let again = try #require(try outcomes[1].result.get().first)
            #expect(!first.duplicate)
            #expect(again.duplicate)
            #expect(again.message == first.message)
            #expect(try await store.history(roomId: room.id, after: nil, before: nil, limit: 10).messages.map(\.content) == ["first"])
        }
    }

    @Test func pipelinedCommitsNumberEachRoomInCallOrderAndFindRepeats() async throws {
        try await PostgresTests().withDatabase { configuration in
            var configuration = configuration
            configuration.maxBatchSize = 3
            configuration.maxConcurrentCommits = 3
            let store = try await PostgresStore.open(configuration: configuration, logger: testLogger)
            let ana = try await store.makeUser("ana")
            let bob = try await store.makeUser("bob")
            let rooms = [try await store.makeRoom("One", creator: ana, members: [bob]), try await store.makeRoom("Two", creator: ana, members: [bob])]
            let users = [ana, bob]
            let answers = Answers()
            let unique = 60
            let total = 90
            // Calls 60…89 repeat the clientIds of calls 0…29 (same room and sender), while those
            // may still be in flight.
            for index in 0..<total {
                let original = index < unique ? index : index - unique
                answers.submit(
                    "\(index)", message("m\(index)", in: rooms[original % 3 == 0 ? 1 : 0], from: users[original % 2], clientId: "c\(original)"),
                    to: store)
            }
            let outcomes = await answers.wait(for: total)
            #expect(outcomes.map(\.label) == (0..<total).map { "\($0)" }, "answered in call order")
            let results = try outcomes.map { try #require(try $0.result.get().first) }
            for room in rooms {
                let stored = results.prefix(unique).filter { $0.message.roomId == room.id }
                #expect(stored.map(\.message.seq) == Array(1...stored.count), "numbered in call order, without gaps")
                #expect(stored.allSatisfy { !$0.duplicate })
                #expect(try await store.history(roomId: room.id, after: nil, before: nil, limit: 100).messages == stored.map(\.message))
            }
            for index in unique..<total {
                #expect(results[index].duplicate)
                #expect(results[index].message == results[index - unique].message)
            }
            try await store.close()
        }
    }
}
