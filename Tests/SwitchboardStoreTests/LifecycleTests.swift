import Foundation
import SwitchboardProtocol
import Testing

@testable import SwitchboardSQLite
import SwitchboardStore

@Suite("Opening, closing and reopening", .timeLimit(.minutes(1)))
struct LifecycleTests {
    @Test func reopenedStoreKeepsDataAndContinuesSeq() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/chat.db"
            let first = try await openStore(at: path)
            let ana = try await first.makeUser("ana")
            let room = try await first.makeRoom("General", creator: ana)
            let message = try await first.send("one", in: room, from: ana, clientId: "c-1").message
            try await first.send("two", in: room, from: ana)
            _ = try await first.react(messageId: message.id, userId: ana.id, reaction: "👍", action: .add, now: 1)
            _ = try await first.createToken(NewToken(userId: ana.id, hash: [1, 2, 3], name: "bot", kind: .api, now: 1, expiresAt: nil))
            #expect(FileManager.default.fileExists(atPath: path + "-wal"), "the database is in WAL mode")
            let schemaVersion = try await first.read { try await $0.query("PRAGMA user_version").first?.column("user_version")?.integer }
            #expect(schemaVersion == Schema.migrations.count)
            try await first.close()

            let second = try await openStore(at: path)
            do {
                #expect(try await second.user(id: ana.id) == ana)
                #expect(try await second.activeToken(hash: [1, 2, 3], now: 2)?.user == ana)
                #expect(try await second.message(id: message.id)?.reactions == ["👍": 1])
                #expect(try await second.send("one", in: room, from: ana, clientId: "c-1").duplicate)
                #expect(try await second.send("three", in: room, from: ana).message.seq == 3)
                #expect(try await second.history(roomId: room.id, after: nil, before: nil, limit: 10).messages.map(\.content) == ["one", "two", "three"])
                try await second.close()
            } catch {
                try? await second.close()
                throw error
            }
        }
    }

    @Test func openingInAMissingFolderIsUnavailableAndNamesThePath() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/missing/chat.db"
            do {
                _ = try await openStore(at: path)
                Issue.record("opening \(path) should fail")
            } catch let error as StoreError {
                #expect(error.code == .unavailable)
                #expect(error.message.contains(path))
                #expect(error.message.contains("check the folder exists and is writable"))
                #expect(error.cause != nil)
            }
        }
    }

    @Test func databaseFromANewerSchemaIsRefused() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/chat.db"
            let store = try await openStore(at: path)
            try await store.write { connection in _ = try await connection.query("PRAGMA user_version = 99") }
            try await store.close()
            #expect(await storeErrorCode { try await openStore(at: path) } == .unavailable)
        }
    }

    @Test func closeWaitsForQueuedWritesAndThenRefusesMore() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/chat.db"
            let store = try await openStore(at: path)
            let ana = try await store.makeUser("ana")
            let room = try await store.makeRoom("General", creator: ana)
            let release = await store.holdWriter()
            let pending = Task { try await store.send("queued", in: room, from: ana) }
            await store.waitForPendingAppends(1)
            async let closing: Void = store.close()
            while !store.writeQueue.withLock({ $0.isClosed }) { await Task.yield() }
            release()
            try await closing
            #expect(try await pending.value.message.seq == 1)
            #expect(await storeErrorCode { try await store.send("late", in: room, from: ana) } == .unavailable)
            #expect(await storeErrorCode { try await store.room(id: room.id) } == .unavailable)
            try await store.close()

            let reopened = try await openStore(at: path)
            #expect(try await reopened.room(id: room.id)?.lastSeq == 1)
            try await reopened.close()
        }
    }
}
