import Foundation
import Synchronization
import SwitchboardAgent
import SwitchboardAgentTesting
import SwitchboardProtocol
import SwitchboardTesting
import Testing

@testable import PostgresArchive

/// The plugin inside a real agent, against a real chat server and a real PostgreSQL.
@Suite(.serialized, .timeLimit(.minutes(2))) struct ArchivePluginTests {
    static func plugin(url: String, schema: String, retention: ArchiveConfiguration.Retention = .init()) -> PostgresArchivePlugin {
        PostgresArchivePlugin(configuration: ArchiveConfiguration(url: url, schema: schema, batchSize: 100, retention: retention), logger: TestPostgres.logger)
    }

    /// A server that lets the tester send hundreds of messages at once (at the default 10 a second,
    /// the 500 of the backfill took 48 s).
    static let server = TestServer.testConfiguration { configuration in
        configuration.messagesPerSecond = 10_000
        configuration.messageBurst = 10_000
    }

    /// Runs `body` with a bot that archives into a new schema, and that schema to read.
    static func withArchivingBot(
        url: String? = nil, retention: ArchiveConfiguration.Retention = .init(), clock: TestClock = TestClock(),
        _ body: @Sendable (BotTest, ArchiveDatabase) async throws -> Void
    ) async throws {
        let url = try url ?? TestPostgres.url
        let schema = TestPostgres.uniqueSchema()
        try await ArchiveDatabase.withDatabase(url: url, schema: schema, logger: TestPostgres.logger) { archive in
            try await BotTest.run(plugins: [plugin(url: url, schema: schema, retention: retention)], clock: clock, server: server, logger: TestPostgres.logger) { test in
                try await body(test, archive)
            }
        }
    }

    /// The rooms of the hits in a `!search` answer (each hit's line starts with `#room · `).
    static func hitRooms(_ answer: String) -> Set<String> {
        Set(answer.split(separator: "\n").filter { $0.hasPrefix("#") }.compactMap { $0.dropFirst().components(separatedBy: " · ").first })
    }

    static func seqs(_ archive: ArchiveDatabase, room: String) async throws -> [Int] {
        var seqs: [Int] = []
        try await archive.exportMessages(roomId: room) { seqs.append($0.seq) }
        return seqs
    }

    @Test func liveMessagesReactionsAndBridgeMetadataAreArchived() async throws {
        try await Self.withArchivingBot { test, archive in
            let first = try await test.say("hello archive")
            let meta: JSONValue = ["bridge": ["network": "libera", "channel": "#sb", "nick": "ana"]]
            _ = try await test.tester.client.send("from IRC", to: test.room.id, meta: meta)
            try await eventually("two messages archived") { try await archive.messageCount(roomId: test.room.id) == 2 }
            _ = try await test.tester.client.react("👍", to: first.id, in: test.room.id)
            try await eventually("the reaction archived") {
                var reactions: [String: Int] = [:]
                try await archive.exportMessages(roomId: test.room.id) { if $0.seq == first.seq { reactions = $0.reactions } }
                return reactions == ["👍": 1]
            }
            var exported: [ArchivedMessage] = []
            try await archive.exportMessages(roomId: test.room.id) { exported.append($0) }
            #expect(exported.map(\.content) == ["hello archive", "from IRC"])
            #expect(exported[0].username == "tester")
            #expect(ExportFormat.bridgeNick(exported[1].meta) == "ana@libera")
            #expect(try await archive.positions()[test.room.id] == 2)
            #expect(try await archive.rooms().contains { $0.id == test.room.id && $0.name == "test-room" })
        }
    }

    @Test func messagesOfARoomNotArchivedDoNotListTheRoomsAgain() async throws {
        let url = try TestPostgres.url
        let schema = TestPostgres.uniqueSchema()
        let plugin = PostgresArchivePlugin(configuration: ArchiveConfiguration(url: url, schema: schema, rooms: ["test-room"], batchSize: 100), logger: TestPostgres.logger)
        try await ArchiveDatabase.withDatabase(url: url, schema: schema, logger: TestPostgres.logger) { archive in
            try await BotTest.run(plugins: [plugin], logger: TestPostgres.logger) { test in
                // The first direct message makes a room the archive has not seen: listings find
                // it, and that it is not archived (an event that comes during a listing asks for
                // another, so wait until none is pending).
                let direct = try await test.sayDirect("not archived")
                _ = try await test.say("archived")
                try await eventually("the room's message archived") { try await archive.messageCount(roomId: test.room.id) == 1 }
                try await eventually("no listing pending") { !plugin.statistics.listingPending }
                let listings = plugin.statistics.roomListings

                for number in 1...5 { try await test.sayDirect("not archived either \(number)") }
                _ = try await test.say("archived too")
                try await eventually("the second message archived") { try await archive.messageCount(roomId: test.room.id) == 2 }
                #expect(plugin.statistics.roomListings == listings)
                #expect(try await archive.positions()[direct.roomId] == nil)
            }
        }
    }

    @Test func backfillsWhatWasSentWhileTheAgentWasDown() async throws {
        try await Self.withArchivingBot { test, archive in
            try await test.say("before")
            try await eventually("the first message archived") { try await archive.messageCount(roomId: test.room.id) == 1 }
            await test.stopAgent()
            for index in 1...500 { try await test.say("while the agent was down \(index)") }
            try await test.startAgent()
            try await test.say("after")
            try await eventually("all 502 archived", timeout: .seconds(90)) { try await archive.messageCount(roomId: test.room.id) == 502 }
            #expect(try await Self.seqs(archive, room: test.room.id) == Array(1...502))
            #expect(try await archive.positions()[test.room.id] == 502)
        }
    }

    @Test func postgresStoppedAndStartedWhileMessagesFlowLosesAndDoublesNothing() async throws {
        let postgres = try await ThrowawayPostgres()
        do {
            try await postgres.start()
            try await Self.withArchivingBot(url: postgres.url) { test, archive in
                for index in 1...40 { try await test.say("first \(index)") }
                try await eventually("the first 40 archived") { try await archive.messageCount(roomId: test.room.id) == 40 }
                try await postgres.stop()
                for index in 1...80 { try await test.say("while PostgreSQL is down \(index)") }
                try await postgres.start()
                for index in 1...40 { try await test.say("after \(index)") }
                try await eventually("all 160 archived", timeout: .seconds(90)) { try await archive.messageCount(roomId: test.room.id) == 160 }
                var ids: [String] = []
                var contents: [String] = []
                try await archive.exportMessages(roomId: test.room.id) {
                    ids.append($0.id)
                    contents.append($0.content)
                }
                #expect(Set(ids).count == 160)
                #expect(try await Self.seqs(archive, room: test.room.id) == Array(1...160))
                #expect(contents.filter { $0.hasPrefix("while PostgreSQL is down") }.count == 80)
                #expect(try await archive.positions()[test.room.id] == 160)
            }
        } catch {
            await postgres.destroy()
            throw error
        }
        await postgres.destroy()
    }

    @Test func theAgentStopsWhileMessagesAreBeingArchived() async throws {
        try await Self.withArchivingBot { test, archive in
            for index in 1...100 { try await test.say("busy \(index)") }
            // Asked to stop while batches are written (the pool once stopped first, at the agent's
            // graceful shutdown, and the write in flight then waited for ever). Raced against a
            // deadline rather than awaited, so that a hang fails the test instead of the process.
            let stopped = Mutex(false)
            let stopping = Task {
                await test.stopAgent()
                stopped.withLock { $0 = true }
            }
            try await eventually("the agent stopped", timeout: .seconds(30)) { stopped.withLock { $0 } }
            await stopping.value
            try await test.startAgent()
            try await eventually("all 100 archived") { try await archive.messageCount(roomId: test.room.id) == 100 }
            #expect(try await Self.seqs(archive, room: test.room.id) == Array(1...100))
        }
    }

    @Test func searchShowsAUserOnlyTheRoomsTheyAreAMemberOf() async throws {
        try await Self.withArchivingBot { test, archive in
            let secret = try await test.server.createRoom("secret", token: test.tester.token, members: [test.bot.id])
            try await test.say("the launch code is swordfish", in: secret.id)
            try await test.say("swordfish sandwiches for lunch")
            try await eventually("both messages archived") {
                let inSecret = try await archive.messageCount(roomId: secret.id)
                let inRoom = try await archive.messageCount(roomId: test.room.id)
                return inSecret == 1 && inRoom == 1
            }
            let mine = try await test.askDirect("!search swordfish")
            #expect(mine.contains("launch code") && mine.contains("sandwiches"), "\(mine)")
            #expect(mine.contains("**swordfish**"))
            try await test.withUser("mallory") { mallory in
                try await mallory.sayDirect("!search swordfish", to: test.bot.id)
                let answer = try await mallory.nextMessage(from: test.bot.id).content
                #expect(answer.contains("sandwiches") && !answer.contains("launch"), "\(answer)")
                try await mallory.sayDirect("!search launch", to: test.bot.id)
                // Only her own command, in her direct room with the bot, matches; the private room's message does not show.
                let own = try await mallory.nextMessage(from: test.bot.id).content
                #expect(!Self.hitRooms(own).contains("secret") && !own.contains("is swordfish"), "\(own)")
                // Added to the private room, she finds its message; removed again, no longer.
                _ = try await test.tester.client.addMember(mallory.user.id, to: secret.id)
                try await mallory.sayDirect("!search launch", to: test.bot.id)
                let asMember = try await mallory.nextMessage(from: test.bot.id).content
                #expect(Self.hitRooms(asMember).contains("secret") && asMember.contains("code is swordfish"), "\(asMember)")
                _ = try await test.tester.client.removeMember(mallory.user.id, from: secret.id)
                try await mallory.sayDirect("!search launch", to: test.bot.id)
                let removed = try await mallory.nextMessage(from: test.bot.id).content
                // (Her direct room still holds the bot's earlier answer, which quoted it: that she was shown.)
                #expect(!Self.hitRooms(removed).contains("secret"), "\(removed)")
            }
            // Asked in a group room, the answer goes to the asker alone.
            try await test.say("!search swordfish")
            let reply = try await test.reply()
            #expect(reply.roomId != test.room.id)
            #expect(reply.content.contains("launch code"))
        }
    }

    @Test func retentionDeletesOldMessagesOnSchedule() async throws {
        let clock = TestClock()
        try await Self.withArchivingBot(retention: .init(rooms: ["test-room": 30]), clock: clock) { test, archive in
            let kept = try await test.server.createRoom("kept", token: test.tester.token, members: [test.bot.id])
            try await test.say("kept for ever", in: kept.id)
            try await test.say("old news")
            try await test.say("older news")
            try await eventually("three messages archived") { try await archive.messageCount() == 3 }
            test.advance(by: .seconds(29 * 86_400))
            test.advance(by: .seconds(2 * 86_400))
            try await eventually("the room's messages deleted after 30 days") { try await archive.messageCount(roomId: test.room.id) == 0 }
            #expect(try await archive.messageCount(roomId: kept.id) == 1)
            // Deleted by retention is not archived again.
            try await test.say("new news")
            try await eventually("the new message archived") { try await archive.messageCount(roomId: test.room.id) == 1 }
            #expect(try await Self.seqs(archive, room: test.room.id) == [3])
        }
    }
}
