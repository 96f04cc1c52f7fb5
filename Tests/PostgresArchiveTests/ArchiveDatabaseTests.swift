import Foundation
import SwitchboardProtocol
import SwitchboardTesting
import Testing

@testable import PostgresArchive

@Suite(.timeLimit(.minutes(1))) struct ArchiveDatabaseTests {
    @Test func theSameMessagesTwiceAreOneRowEach() async throws {
        try await TestPostgres.withArchive { archive in
            let batch = (1...50).map { message($0, "message \($0)") }
            let users = [User(id: "user-1", username: "ana", displayName: "Ana", isBot: false)]
            try await archive.write(room: room(), messages: batch, users: users, upTo: 50)
            try await archive.write(room: room(), messages: batch, users: users, upTo: 50)
            try await archive.write(room: room(), messages: Array(batch[10..<20]), users: users, upTo: 20)
            #expect(try await archive.messageCount() == 50)
            #expect(try await archive.positions() == ["room-1": 50], "a repeated older batch does not move the position back")
        }
    }

    @Test func aMessageSeenAgainAfterAnEditIsUpdatedInPlace() async throws {
        try await TestPostgres.withArchive { archive in
            try await archive.write(room: room(), messages: [message(1, "frist"), message(2, "second")], users: [], upTo: 2)
            var edited = message(1, "first")
            edited.editedAt = 1_780_000_100_000
            edited.reactions = ["👍": 2]
            try await archive.write(room: room(), messages: [edited], users: [], upTo: 1)
            var exported: [ArchivedMessage] = []
            try await archive.exportMessages(roomId: "room-1") { exported.append($0) }
            #expect(exported.map(\.content) == ["first", "second"])
            #expect(exported[0].editedAt == 1_780_000_100_000)
            #expect(try await archive.messageCount() == 2)
        }
    }

    @Test func theBridgeMetadataIsKept() async throws {
        try await TestPostgres.withArchive { archive in
            let meta: JSONValue = ["bridge": ["network": "libera", "channel": "#sb", "nick": "ana"]]
            try await archive.write(room: room(), messages: [message(1, "from IRC", meta: meta)], users: [], upTo: 1)
            var exported: [ArchivedMessage] = []
            try await archive.exportMessages(roomId: "room-1") { exported.append($0) }
            let stored = try #require(exported.first?.meta)
            let object = try JSONDecoder().decode(JSONValue.self, from: Data(stored.utf8))
            #expect(object == meta)
            #expect(ExportFormat.bridgeNick(stored) == "ana@libera")
        }
    }

    @Test func preparingTwiceOrAtOnceIsHarmlessAndAChangedLanguageRebuildsTheIndex() async throws {
        let url = try TestPostgres.url
        let schema = TestPostgres.uniqueSchema()
        try await ArchiveDatabase.withDatabase(url: url, schema: schema, logger: TestPostgres.logger) { archive in
            try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<4 { group.addTask { try await archive.prepare(language: "english") } }
                for try await version in group { #expect(version == ArchiveDatabase.migrations.count) }
            }
            try await archive.write(room: room(), messages: [message(1, "the runners were running")], users: [], upTo: 1)
            #expect(try await archive.search(SearchQuery(text: "run")).count == 1, "english stems running to run")
            try await archive.prepare(language: "simple")
            #expect(try await archive.search(SearchQuery(text: "run")).isEmpty, "simple does not stem")
            #expect(try await archive.search(SearchQuery(text: "running")).count == 1)
        }
    }

    @Test func anUnknownLanguageIsRefusedWithTheFix() async throws {
        let url = try TestPostgres.url
        try await ArchiveDatabase.withDatabase(url: url, schema: TestPostgres.uniqueSchema(), logger: TestPostgres.logger) { archive in
            let error = await #expect(throws: ArchiveError.self) { try await archive.prepare(language: "klingon") }
            #expect(error?.code == .invalid)
            #expect(error?.description.contains("pg_ts_config") == true)
        }
    }

    @Test func startingThePoolRightBeforeAQueryLogsNoWarning() async throws {
        // The query can come before the pool's `run()` (it waits for it); postgres-nio then warns that
        // `run()` was not called, which users of the archive saw at every start.
        let recorder = LogRecorder()
        for _ in 0..<20 {
            try await ArchiveDatabase.withDatabase(url: try TestPostgres.url, logger: recorder.logger()) { archive in
                _ = try await archive.client.query("SELECT 1")
            }
        }
        #expect(recorder.all.filter { $0.hasPrefix("warning") }.isEmpty, "\(recorder.all.filter { $0.hasPrefix("warning") })")
    }

    @Test func badConfigurationIsRefused() throws {
        #expect(throws: ArchiveError.self) { try DatabaseAddress(url: "mysql://x@h/db") }
        #expect(throws: ArchiveError.self) { try DatabaseAddress(url: "postgres://x@h/") }
        #expect(throws: ArchiveError.self) { try ArchiveDatabase(url: "postgres://x@h/db", schema: "a; DROP TABLE x", logger: TestPostgres.logger) }
        #expect(ArchiveDatabase.isIdentifier("switchboard_archive"))
        #expect(!ArchiveDatabase.isIdentifier("1abc"))
        #expect(!ArchiveDatabase.isIdentifier("Abc"))
    }

    @Test func retentionDeletesOnlyOlderMessagesOfTheRoom() async throws {
        try await TestPostgres.withArchive { archive in
            let day = 86_400_000
            let now = 1_780_000_000_000
            try await archive.write(room: room(), messages: [message(1, "old", at: now - 40 * day), message(2, "new", at: now - day)], users: [], upTo: 2)
            try await archive.write(room: room("room-2", name: "other"), messages: [message(1, room: "room-2", "old elsewhere", at: now - 40 * day)], users: [], upTo: 1)
            let cutoff = Date(timeIntervalSince1970: Double(now - 30 * day) / 1000)
            #expect(try await archive.deleteMessages(roomId: "room-1", before: cutoff) == 1)
            #expect(try await archive.messageCount(roomId: "room-1") == 1)
            #expect(try await archive.messageCount(roomId: "room-2") == 1)
            #expect(try await archive.positions()["room-1"] == 2, "the position stays, so nothing is archived again")
        }
    }
}
