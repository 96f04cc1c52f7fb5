import SwitchboardProtocol
import Testing

@testable import SwitchboardSQLite
import SwitchboardStore

/// The SQLite writer's group commit: a whole batch in one job on the writer's thread, with
/// statements prepared once and kept (``DirectConnection``).
@Suite("SQLite group commit", .timeLimit(.minutes(1)))
struct GroupCommitTests {
    @Test func batchWithADuplicateAndABadRowFailsWholeAndChangesNothing() async throws {
        try await withStore { store in
            let ana = try await store.makeUser("ana")
            let room = try await store.makeRoom("General", creator: ana)
            let original = try await store.send("first", in: room, from: ana, clientId: "c-1").message
            let release = await store.holdWriter()
            async let duplicate = storeErrorCode { try await store.send("first again", in: room, from: ana, clientId: "c-1") }
            async let new = storeErrorCode { try await store.send("second", in: room, from: ana, clientId: "c-2") }
            // An unknown author breaks a foreign key: the whole batch is rolled back.
            async let bad = storeErrorCode {
                try await store.append(NewMessage(roomId: room.id, userId: "u_missing", content: "x", clientId: nil, replyTo: nil, meta: nil, now: 1))
            }
            await store.waitForPendingAppends(3)
            release()
            #expect(await [duplicate, new, bad] == [.unavailable, .unavailable, .unavailable])
            #expect(try await store.history(roomId: room.id, after: nil, before: nil, limit: 50).messages == [original])
            #expect(try await store.room(id: room.id)?.lastSeq == 1)

            // The writer goes on: the duplicate is answered with the original, the new one follows it.
            let repeated = try await store.send("first again", in: room, from: ana, clientId: "c-1")
            #expect(repeated.duplicate)
            #expect(repeated.message == original)
            #expect(try await store.send("second", in: room, from: ana, clientId: "c-2").message.seq == 2)
        }
    }

    @Test func batchWithADuplicateAndAnUnknownRoomStoresTheRestInOneCommit() async throws {
        try await withStore { store in
            let ana = try await store.makeUser("ana")
            let room = try await store.makeRoom("General", creator: ana)
            let original = try await store.send("first", in: room, from: ana, clientId: "c-1").message
            let batchesBefore = store.committedBatches.load(ordering: .relaxed)
            let release = await store.holdWriter()
            async let duplicate = store.send("first again", in: room, from: ana, clientId: "c-1")
            async let new = store.send("second", in: room, from: ana, clientId: "c-2")
            async let unknown = storeErrorCode {
                try await store.append(NewMessage(roomId: "r_missing", userId: ana.id, content: "lost", clientId: "c-3", replyTo: nil, meta: nil, now: 1))
            }
            await store.waitForPendingAppends(3)
            release()
            #expect(try await duplicate.duplicate)
            #expect(try await duplicate.message == original)
            #expect(try await new.message.seq == 2)
            #expect(await unknown == .notFound)
            #expect(store.committedBatches.load(ordering: .relaxed) == batchesBefore + 1)
            #expect(try await store.room(id: room.id)?.lastSeq == 2)
        }
    }

    @Test func duplicateIsAnsweredWithEveryFieldOfTheOriginal() async throws {
        try await withStore { store in
            let ana = try await store.makeUser("ana")
            let room = try await store.makeRoom("General", creator: ana)
            let first = try await store.send("", in: room, from: ana).message
            let meta: JSONValue = ["bridge": ["nick": "ana"]]
            let original = try await store.append(
                NewMessage(roomId: room.id, userId: ana.id, content: "héllo 👋", clientId: "c-ü", replyTo: first.id, meta: meta, now: 7)
            ).message
            _ = try await store.react(messageId: original.id, userId: ana.id, reaction: "👍", action: .add, now: 8)
            let stored = try #require(try await store.message(id: original.id))
            let repeated = try await store.append(
                NewMessage(roomId: room.id, userId: ana.id, content: "other", clientId: "c-ü", replyTo: nil, meta: nil, now: 9))
            #expect(repeated.duplicate)
            #expect(repeated.message == stored)
            #expect(repeated.message.reactions == ["👍": 1])
            // Empty text is stored as text, not as NULL.
            #expect(try await store.message(id: first.id)?.content == "")
        }
    }

    @Test func keptStatementsSurviveASchemaChange() async throws {
        try await withStore { store in
            let ana = try await store.makeUser("ana")
            let room = try await store.makeRoom("General", creator: ana)
            try await store.send("before", in: room, from: ana, clientId: "c-1")
            let kept = try await store.writerThreadPool.runIfActive { store.batchWriter.preparedCount }
            // A schema change on the other connection: SQLite prepares the kept statements again.
            try await store.write { connection in _ = try await connection.query("CREATE INDEX messages_created_at ON messages (created_at)") }
            try await store.send("after", in: room, from: ana, clientId: "c-2")
            #expect(try await store.send("after again", in: room, from: ana, clientId: "c-2").duplicate)
            #expect(try await store.room(id: room.id)?.lastSeq == 2)
            #expect(try await store.writerThreadPool.runIfActive { store.batchWriter.preparedCount } == kept)
        }
    }

    /// A commit's log is written in a few large writes (`CSQLiteGatheredWAL`), and what it wrote
    /// reads back, from other connections and after the file is opened again. The batch's log is
    /// several times the gathering buffer, which the default VFS's largest write bounds.
    @Test func aLargeCommitsLogIsWrittenInFewWritesAndReadsBack() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/chat.db"
            let count = 300
            let rooms = try await withStore(at: path) { store in
                let ana = try await store.makeUser("ana")
                let rooms = [try await store.makeRoom("General", creator: ana), try await store.makeRoom("Random", creator: ana)]
                let before = try #require(try await store.writerThreadPool.runIfActive { store.batchWriter.logWriteCounts() })
                let batchesBefore = store.committedBatches.load(ordering: .relaxed)
                let release = await store.holdWriter()
                try await withThrowingTaskGroup { group in
                    for index in 0..<count {
                        group.addTask {
                            try await store.send(Self.content(index), in: rooms[index % 2], from: ana, clientId: "c-\(index)")
                        }
                    }
                    await store.waitForPendingAppends(count)
                    release()
                    try await group.waitForAll()
                }
                #expect(store.committedBatches.load(ordering: .relaxed) == batchesBefore + 1)
                let after = try #require(try await store.writerThreadPool.runIfActive { store.batchWriter.logWriteCounts() })
                let writes = after.writes - before.writes
                let flushes = after.flushes - before.flushes
                // 300 messages of 2 KB: some 150 pages, each a header and a page: 300 writes and more.
                #expect(writes >= 300)
                #expect(flushes * 20 <= writes, "\(writes) writes made \(flushes) system calls")
                try await expectAll(count, in: rooms, of: store)
                return rooms
            }

            try await withStore(at: path) { reopened in try await expectAll(count, in: rooms, of: reopened) }
        }
    }

    @Test func logWritesAreGatheredOnlyWhenCommitsSyncTheLog() async throws {
        try await withTemporaryDirectory { directory in
            try await withStore(at: directory + "/chat.db", configuration: .init(synchronous: .normal)) { store in
                let ana = try await store.makeUser("ana")
                try await store.send("hello", in: try await store.makeRoom("General", creator: ana), from: ana)
                #expect(try await store.writerThreadPool.runIfActive { store.batchWriter.logWriteCounts() } == nil)
            }
        }
    }

    private static func content(_ index: Int) -> String {
        "\(index) " + String(repeating: "abcdefghij", count: 200)
    }

    private func expectAll(_ count: Int, in rooms: [Room], of store: SQLiteStore) async throws {
        var contents: Set<String> = []
        for room in rooms {
            var after = 0
            while true {
                let page = try await store.history(roomId: room.id, after: after, before: nil, limit: 100).messages
                guard let last = page.last else { break }
                contents.formUnion(page.map(\.content))
                after = last.seq
            }
        }
        let missing = (0..<count).filter { !contents.contains(Self.content($0)) }
        #expect(contents.count == count && missing.isEmpty, "\(contents.count) messages read back; missing: \(missing.prefix(10))")
    }

    @Test func closedConnectionRefusesStatements() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/chat.db"
            try await openStore(at: path).close()
            let connection = try DirectConnection(path: path)
            #expect(try connection.withStatement("SELECT count(*) FROM messages") { statement in
                try statement.step() ? statement.integer(0) : -1
            } == 0)
            connection.close()
            #expect(throws: StoreError.self) { try connection.withStatement("SELECT 1") { try $0.run() } }
            #expect(throws: StoreError.self) { try connection.execute("PRAGMA user_version") }
            connection.close()
        }
    }

    @Test func missingFileIsNotCreated() async throws {
        _ = try await withTemporaryDirectory { directory in
            #expect(throws: StoreError.self) { _ = try DirectConnection(path: directory + "/missing.db") }
        }
    }
}
