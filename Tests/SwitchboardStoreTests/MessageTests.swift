import SwitchboardProtocol
import Synchronization
import Testing

@testable import SwitchboardSQLite
import SwitchboardStore
import SwitchboardTesting

@Suite("Appending messages", .timeLimit(.minutes(1)))
struct AppendTests {
    @Test(arguments: TestDatabase.allCases) func seqCountsUpPerRoom(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            let ana = try await store.makeUser("ana")
            let first = try await store.makeRoom("First", creator: ana)
            let second = try await store.makeRoom("Second", creator: ana)
            #expect(try await store.send("a", in: first, from: ana).message.seq == 1)
            #expect(try await store.send("b", in: first, from: ana).message.seq == 2)
            #expect(try await store.send("c", in: second, from: ana).message.seq == 1)
            #expect(try await store.send("d", in: first, from: ana).message.seq == 3)
            #expect(try await store.room(id: first.id)?.lastSeq == 3)
            #expect(try await store.room(id: second.id)?.lastSeq == 1)
        }
    }

    @Test(arguments: TestDatabase.allCases) func storedMessageKeepsEveryField(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            let ana = try await store.makeUser("ana")
            let room = try await store.makeRoom("General", creator: ana)
            let first = try await store.send("hello", in: room, from: ana).message
            let meta: JSONValue = ["bridge": ["network": "irc", "channel": "#rust", "nick": "ana"]]
            let reply = try await store.append(
                NewMessage(roomId: room.id, userId: ana.id, content: "re", clientId: "c-1", replyTo: first.id, meta: meta, now: 42))
            #expect(!reply.duplicate)
            #expect(reply.message.id.hasPrefix("m_"))
            let stored = try #require(try await store.message(id: reply.message.id))
            #expect(stored == reply.message)
            #expect(stored.meta == meta)
            #expect(stored.replyTo == first.id)
            #expect(stored.clientId == "c-1")
            #expect(stored.createdAt == 42)
            #expect(stored.reactions == [:])
            #expect(!stored.deleted)
            #expect(try await store.message(id: "m_missing") == nil)
        }
    }

    @Test(arguments: TestDatabase.allCases) func concurrentAppendsGetGaplessSeqsInEveryRoom(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            let users = [try await store.makeUser("ana"), try await store.makeUser("bob"), try await store.makeUser("cy")]
            var rooms: [Room] = []
            for name in ["one", "two", "three"] { rooms.append(try await store.makeRoom(name, creator: users[0], members: users)) }
            let messageCount = 200
            let results = try await withThrowingTaskGroup(of: AppendResult.self) { group in
                for index in 0..<messageCount {
                    let (room, user) = (rooms[index % 3], users[index % 2])
                    group.addTask { try await store.send("message \(index)", in: room, from: user) }
                }
                return try await group.reduce(into: [AppendResult]()) { $0.append($1) }
            }
            #expect(results.count == messageCount)
            #expect(Set(results.map(\.message.id)).count == messageCount)
            for room in rooms {
                let seqs = results.filter { $0.message.roomId == room.id }.map(\.message.seq).sorted()
                #expect(seqs == Array(1...seqs.count))
                let history = try await store.history(roomId: room.id, after: nil, before: nil, limit: 500)
                #expect(history.messages.map(\.seq) == seqs)
                #expect(try await store.room(id: room.id)?.lastSeq == seqs.count)
            }
        }
    }

    @Test func callersWaitingTogetherShareOneCommit() async throws {
        try await withStore { store in
            let ana = try await store.makeUser("ana")
            let room = try await store.makeRoom("General", creator: ana)
            let release = await store.holdWriter()
            let batchesBefore = store.committedBatches.load(ordering: .relaxed)
            let seqs = try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<50 { group.addTask { try await store.send("m\(index)", in: room, from: ana).message.seq } }
                await store.waitForPendingAppends(50)
                release()
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(seqs.sorted() == Array(1...50))
            #expect(store.committedBatches.load(ordering: .relaxed) == batchesBefore + 1)
        }
    }

    @Test(arguments: TestDatabase.allCases) func repeatedClientIdAcrossCommitsStoresOnce(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            let ana = try await store.makeUser("ana")
            let bob = try await store.makeUser("bob")
            let room = try await store.makeRoom("General", creator: ana, members: [bob])
            let other = try await store.makeRoom("Other", creator: ana)
            let first = try await store.send("hello", in: room, from: ana, clientId: "c-1")
            let repeated = try await store.send("hello again", in: room, from: ana, clientId: "c-1")
            #expect(!first.duplicate)
            #expect(repeated.duplicate)
            #expect(repeated.message == first.message)
            // The key is (user, room, clientId): another user or another room is a new message.
            #expect(try await !store.send("hi", in: room, from: bob, clientId: "c-1").duplicate)
            #expect(try await !store.send("hi", in: other, from: ana, clientId: "c-1").duplicate)
            #expect(try await store.history(roomId: room.id, after: nil, before: nil, limit: 50).messages.count == 2)
        }
    }

    @Test(arguments: TestDatabase.allCases) func repeatedClientIdWithinOneCallStoresOnce(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            let ana = try await store.makeUser("ana")
            let room = try await store.makeRoom("General", creator: ana)
            let message = NewMessage(roomId: room.id, userId: ana.id, content: "hi", clientId: "c-1", replyTo: nil, meta: nil, now: 1)
            let results = try await store.append([message, message])
            #expect(results.map(\.duplicate) == [false, true])
            #expect(results[0].message == results[1].message)
            #expect(try await store.room(id: room.id)?.lastSeq == 1)
        }
    }

    @Test func repeatedClientIdFromCallersInOneBatchStoresOnce() async throws {
        try await withStore { store in
            let ana = try await store.makeUser("ana")
            let room = try await store.makeRoom("General", creator: ana)
            let release = await store.holdWriter()
            let results = try await withThrowingTaskGroup(of: AppendResult.self) { group in
                for _ in 0..<5 { group.addTask { try await store.send("hi", in: room, from: ana, clientId: "same") } }
                await store.waitForPendingAppends(5)
                release()
                return try await group.reduce(into: [AppendResult]()) { $0.append($1) }
            }
            #expect(results.filter { !$0.duplicate }.count == 1)
            #expect(Set(results.map(\.message.id)).count == 1)
            #expect(try await store.history(roomId: room.id, after: nil, before: nil, limit: 50).messages.count == 1)
        }
    }

    @Test func unknownRoomFailsOnlyItsOwnCaller() async throws {
        try await withStore { store in
            let ana = try await store.makeUser("ana")
            let room = try await store.makeRoom("General", creator: ana)
            let release = await store.holdWriter()
            async let good = store.send("fine", in: room, from: ana)
            async let bad = storeErrorCode {
                try await store.append(NewMessage(roomId: "r_missing", userId: ana.id, content: "lost", clientId: nil, replyTo: nil, meta: nil, now: 1))
            }
            await store.waitForPendingAppends(2)
            release()
            #expect(try await good.message.seq == 1)
            #expect(await bad == .notFound)
        }
    }

    @Test func failedBatchFailsEveryCallerAndStoresNothing() async throws {
        try await withStore { store in
            let ana = try await store.makeUser("ana")
            let room = try await store.makeRoom("General", creator: ana)
            let release = await store.holdWriter()
            // An unknown author breaks a foreign key in the middle of the batch.
            async let good = storeErrorCode { try await store.send("fine", in: room, from: ana) }
            async let bad = storeErrorCode {
                try await store.append(NewMessage(roomId: room.id, userId: "u_missing", content: "x", clientId: nil, replyTo: nil, meta: nil, now: 1))
            }
            await store.waitForPendingAppends(2)
            release()
            #expect(await good == .unavailable)
            #expect(await bad == .unavailable)
            #expect(try await store.history(roomId: room.id, after: nil, before: nil, limit: 50).messages.isEmpty)
            #expect(try await store.room(id: room.id)?.lastSeq == 0)
            #expect(try await store.send("next", in: room, from: ana).message.seq == 1)
        }
    }
}

@Suite("History paging", .timeLimit(.minutes(1)))
struct HistoryTests {
    /// A room with messages 1 to 10.
    func withTenMessages(_ database: TestDatabase, _ body: (any ChatStore, Room) async throws -> Void) async throws {
        try await withStore(database) { store in
            let ana = try await store.makeUser("ana")
            let room = try await store.makeRoom("General", creator: ana)
            _ = try await store.append((1...10).map {
                NewMessage(roomId: room.id, userId: ana.id, content: "\($0)", clientId: nil, replyTo: nil, meta: nil, now: $0)
            })
            try await body(store, room)
        }
    }

    struct Page: Equatable {
        var seqs: [Int]
        var hasMore: Bool
    }

    func page(_ store: any ChatStore, _ room: Room, after: Int? = nil, before: Int? = nil, limit: Int) async throws -> Page {
        let response = try await store.history(roomId: room.id, after: after, before: before, limit: limit)
        return Page(seqs: response.messages.map(\.seq), hasMore: response.hasMore)
    }

    @Test(arguments: TestDatabase.allCases) func newestPageSaysWhetherOlderExist(_ database: TestDatabase) async throws {
        try await withTenMessages(database) { store, room async throws in
            #expect(try await page(store, room, limit: 3) == Page(seqs: [8, 9, 10], hasMore: true))
            #expect(try await page(store, room, limit: 10) == Page(seqs: Array(1...10), hasMore: false))
            #expect(try await page(store, room, limit: 50) == Page(seqs: Array(1...10), hasMore: false))
        }
    }

    @Test(arguments: TestDatabase.allCases) func beforePageIsJustBelowAndSaysWhetherOlderExist(_ database: TestDatabase) async throws {
        try await withTenMessages(database) { store, room async throws in
            #expect(try await page(store, room, before: 5, limit: 2) == Page(seqs: [3, 4], hasMore: true))
            #expect(try await page(store, room, before: 3, limit: 2) == Page(seqs: [1, 2], hasMore: false))
            #expect(try await page(store, room, before: 3, limit: 5) == Page(seqs: [1, 2], hasMore: false))
            #expect(try await page(store, room, before: 1, limit: 5) == Page(seqs: [], hasMore: false))
        }
    }

    @Test(arguments: TestDatabase.allCases) func afterPageIsJustAboveAndSaysWhetherNewerExist(_ database: TestDatabase) async throws {
        try await withTenMessages(database) { store, room async throws in
            #expect(try await page(store, room, after: 5, limit: 2) == Page(seqs: [6, 7], hasMore: true))
            #expect(try await page(store, room, after: 8, limit: 2) == Page(seqs: [9, 10], hasMore: false))
            #expect(try await page(store, room, after: 10, limit: 2) == Page(seqs: [], hasMore: false))
        }
    }

    @Test(arguments: TestDatabase.allCases) func bothBoundsPageUpFromAfterAndStopBelowBefore(_ database: TestDatabase) async throws {
        try await withTenMessages(database) { store, room async throws in
            #expect(try await page(store, room, after: 2, before: 7, limit: 2) == Page(seqs: [3, 4], hasMore: true))
            #expect(try await page(store, room, after: 2, before: 7, limit: 4) == Page(seqs: [3, 4, 5, 6], hasMore: false))
            #expect(try await page(store, room, after: 2, before: 7, limit: 10) == Page(seqs: [3, 4, 5, 6], hasMore: false))
        }
    }

    @Test(arguments: TestDatabase.allCases) func unknownRoomHasNoHistory(_ database: TestDatabase) async throws {
        try await withTenMessages(database) { store, _ in
            let response = try await store.history(roomId: "r_missing", after: nil, before: nil, limit: 10)
            #expect(response.messages.isEmpty)
            #expect(!response.hasMore)
        }
    }
}

@Suite("Replay", .timeLimit(.minutes(1)))
struct ReplayTests {
    func withFiveMessages(_ database: TestDatabase, _ body: (any ChatStore, Room) async throws -> Void) async throws {
        try await withStore(database) { store in
            let ana = try await store.makeUser("ana")
            let room = try await store.makeRoom("General", creator: ana)
            for index in 1...5 { try await store.send("\(index)", in: room, from: ana) }
            try await body(store, room)
        }
    }

    @Test(arguments: TestDatabase.allCases) func replaysEverythingAfterSinceUnderTheCap(_ database: TestDatabase) async throws {
        try await withFiveMessages(database) { store, room in
            let replay = try await store.replay(roomId: room.id, since: 0, cap: 10)
            #expect(replay.messages.map(\.seq) == [1, 2, 3, 4, 5])
            #expect(replay.lastSeq == 5)
            #expect(!replay.truncated)
        }
    }

    @Test(arguments: TestDatabase.allCases) func exactlyTheCapIsReplayedWhole(_ database: TestDatabase) async throws {
        try await withFiveMessages(database) { store, room in
            let replay = try await store.replay(roomId: room.id, since: 2, cap: 3)
            #expect(replay.messages.map(\.seq) == [3, 4, 5])
            #expect(!replay.truncated)
        }
    }

    @Test(arguments: TestDatabase.allCases) func moreThanTheCapReplaysNothingAndIsTruncated(_ database: TestDatabase) async throws {
        try await withFiveMessages(database) { store, room in
            let replay = try await store.replay(roomId: room.id, since: 1, cap: 3)
            #expect(replay.messages.isEmpty)
            #expect(replay.truncated)
            #expect(replay.lastSeq == 5)
        }
    }

    @Test(arguments: TestDatabase.allCases) func sinceAtOrAboveLastSeqReplaysNothing(_ database: TestDatabase) async throws {
        try await withFiveMessages(database) { store, room in
            for since in [5, 9] {
                let replay = try await store.replay(roomId: room.id, since: since, cap: 3)
                #expect(replay.messages.isEmpty)
                #expect(!replay.truncated)
                #expect(replay.lastSeq == 5)
            }
        }
    }

    @Test(arguments: TestDatabase.allCases) func emptyAndUnknownRooms(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            let ana = try await store.makeUser("ana")
            let room = try await store.makeRoom("Empty", creator: ana)
            #expect(try await store.replay(roomId: room.id, since: 0, cap: 10) == Replay(messages: [], lastSeq: 0, truncated: false))
            #expect(await storeErrorCode { try await store.replay(roomId: "r_missing", since: 0, cap: 10) } == .notFound)
        }
    }
}

@Suite("Reactions", .timeLimit(.minutes(1)))
struct ReactionTests {
    @Test(arguments: TestDatabase.allCases) func reactionsAreCountedOncePerUserAndVanishAtZero(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            let ana = try await store.makeUser("ana")
            let bob = try await store.makeUser("bob")
            let room = try await store.makeRoom("General", creator: ana, members: [bob])
            let message = try await store.send("hello", in: room, from: ana).message
            func react(_ user: User, _ reaction: String, _ action: ReactionAction) async throws -> [String: Int] {
                try await store.react(messageId: message.id, userId: user.id, reaction: reaction, action: action, now: 5).reactions
            }

            #expect(try await react(ana, "👍", .add) == ["👍": 1])
            #expect(try await react(ana, "👍", .add) == ["👍": 1])
            #expect(try await react(bob, "👍", .add) == ["👍": 2])
            #expect(try await react(bob, "🎉", .add) == ["👍": 2, "🎉": 1])
            #expect(try await store.message(id: message.id)?.reactions == ["👍": 2, "🎉": 1])

            #expect(try await react(bob, "🎉", .remove) == ["👍": 2])
            #expect(try await react(bob, "🎉", .remove) == ["👍": 2])
            #expect(try await react(ana, "👍", .remove) == ["👍": 1])
            #expect(try await react(bob, "👍", .remove) == [:])
            #expect(try await store.history(roomId: room.id, after: nil, before: nil, limit: 1).messages.first?.reactions == [:])
        }
    }

    @Test(arguments: TestDatabase.allCases) func reactionToAnUnknownMessageIsNotFound(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            let ana = try await store.makeUser("ana")
            let code = await storeErrorCode {
                try await store.react(messageId: "m_missing", userId: ana.id, reaction: "👍", action: .add, now: 1)
            }
            #expect(code == .notFound)
        }
    }
}
