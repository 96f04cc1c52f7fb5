import SwitchboardProtocol
import SwitchboardStore
import SwitchboardTesting
import Testing

/// `switchboard export` and `import`: a whole database from SQLite to PostgreSQL and back.
@Suite("Copying a store between backends", .timeLimit(.minutes(1)))
struct CopyTests {
    /// Something of everything the stores keep, through the live API.
    func populate(_ store: any ChatStore) async throws {
        let ana = try await store.makeUser("ana", displayName: "Ana María")
        let bob = try await store.makeUser("bob")
        let bot = try await store.createUser(NewUser(username: "echo", displayName: "Echo", passwordHash: nil, isBot: true, now: 2))
        _ = try await store.createToken(NewToken(userId: bot.id, hash: Array(0..<32), name: "bot", kind: .api, now: 3, expiresAt: nil))
        let session = try await store.createToken(NewToken(userId: ana.id, hash: Array(repeating: 7, count: 32), name: "s", kind: .session, now: 3, expiresAt: 9_999))
        _ = try await store.revokeToken(id: session.id, ownerId: nil, now: 4)
        let general = try await store.makeRoom("General", creator: ana, members: [bob, bot], isPublic: true)
        let direct = try await store.directRoom(between: ana.id, and: bob.id, now: 5)
        let first = try await store.send("hello 👋", in: general, from: ana, clientId: "c-1", meta: ["bridge": ["network": "irc"]])
        _ = try await store.append(
            NewMessage(roomId: general.id, userId: bob.id, content: "<b>hi</b>", clientId: nil, replyTo: first.message.id, meta: nil, now: 2_000))
        for index in 0..<25 { try await store.send("n\(index)", in: direct, from: index % 2 == 0 ? ana : bob) }
        _ = try await store.react(messageId: first.message.id, userId: bob.id, reaction: "👍", action: .add, now: 6)
        _ = try await store.react(messageId: first.message.id, userId: bot.id, reaction: "👍", action: .add, now: 7)
        _ = try await store.react(messageId: first.message.id, userId: bot.id, reaction: "🎉", action: .add, now: 8)
        try await store.markRead(roomId: direct.id, userId: ana.id, seq: 10)
    }

    func export(_ store: any ChatStore) async throws -> [String] {
        var lines: [String] = []
        try await StoreCopy.export(from: try #require(store as? any TransferableStore), pageSize: 7) { lines.append($0) }
        return lines
    }

    func records(_ lines: [String]) throws -> [TransferRecord] {
        // Between the header and the end line.
        try lines.dropFirst().dropLast().map { try Wire.decode(TransferRecord.self, from: $0) }
    }

    func importLines(_ lines: [String], into store: any ChatStore) async throws {
        var remaining = lines[...]
        try await StoreCopy.import(into: try #require(store as? any TransferableStore), batchSize: 5) { remaining.popFirst() }
    }

    @Test func sqliteToPostgresToSQLiteKeepsEverything() async throws {
        try await TestDatabase.sqlite.withStore(logger: testLogger) { source in
            try await populate(source)
            let original = try await export(source)
            // The header, 3 users, 2 tokens, 2 rooms, 5 members, 27 messages, 3 reactions, the end.
            let expectedLines = 44
            #expect(original.count == expectedLines)
            try await TestDatabase.postgres.withStore(logger: testLogger) { postgres in
                try await importLines(original, into: postgres)
                let throughPostgres = try await export(postgres)
                #expect(try records(throughPostgres) == records(original))
                try await TestDatabase.sqlite.withStore(logger: testLogger) { back in
                    try await importLines(throughPostgres, into: back)
                    #expect(try records(try await export(back)) == records(original))
                }

                // The copy works as the original: room lists with unread counts, tokens, numbering, deduplication.
                for user in try await source.searchUsers(query: "", limit: 10) {
                    #expect(try await postgres.rooms(memberId: user.id) == source.rooms(memberId: user.id))
                }
                let bot = try #require(try await postgres.activeToken(hash: Array(0..<32), now: 10))
                #expect(bot.user.username == "echo")
                #expect(try await postgres.activeToken(hash: Array(repeating: 7, count: 32), now: 10) == nil)
                let ana = try #require(try await postgres.credentials(username: "ANA"))
                #expect(ana.passwordHash == "hash-ana")
                let general = try #require(try await postgres.room(named: "general"))
                #expect(try await postgres.send("again", in: general, from: ana.user, clientId: "c-1").duplicate)
                #expect(try await postgres.send("next", in: general, from: ana.user).message.seq == 3)
            }
        }
    }

    @Test func importingIntoADatabaseWithDataIsRefusedAndChangesNothing() async throws {
        try await TestDatabase.sqlite.withStore(logger: testLogger) { source in
            try await populate(source)
            let lines = try await export(source)
            try await TestDatabase.postgres.withStore(logger: testLogger) { destination in
                _ = try await destination.makeUser("zoe")
                let error = await #expect(throws: StoreError.self) { try await importLines(lines, into: destination) }
                #expect(error?.code == .conflict)
                #expect(error?.message.contains("import into a new, empty database") == true)
                #expect(try await destination.searchUsers(query: "", limit: 10).map(\.username) == ["zoe"])
            }
        }
    }

    @Test func aCopyCutShortIsNotTakenForAWholeOne() async throws {
        try await TestDatabase.sqlite.withStore(logger: testLogger) { source in
            try await populate(source)
            // Cut inside the messages: the messages and reactions the header counts are not all there.
            let lines = Array(try await export(source).dropLast(5))
            try await TestDatabase.sqlite.withStore(logger: testLogger) { destination in
                let error = await #expect(throws: StoreError.self) { try await importLines(lines, into: destination) }
                #expect(error?.message.contains("the copy ends early, at line 39, before its end line") == true, "\(String(describing: error))")
            }
        }
    }

    @Test func aCopyOfADatabaseThatChangedWhileItWasCopiedIsWhole() async throws {
        try await TestDatabase.sqlite.withStore(logger: testLogger) { source in
            try await populate(source)
            var lines = try await export(source)
            // A reaction removed between the count and its page: the header says 3, the copy holds 2.
            lines[0] = lines[0].replacingOccurrences(of: #""reactions":3"#, with: #""reactions":4"#)
            #expect(lines[0].contains(#""reactions":4"#))
            try await TestDatabase.sqlite.withStore(logger: testLogger) { destination in
                try await importLines(lines, into: destination)
                #expect(try records(try await export(destination)) == records(lines))
            }
        }
    }

    @Test func aCopyWithOtherRowsThanItsEndCountsIsRefused() async throws {
        try await TestDatabase.sqlite.withStore(logger: testLogger) { source in
            try await populate(source)
            var lines = try await export(source)
            lines.remove(at: 20)
            try await TestDatabase.sqlite.withStore(logger: testLogger) { destination in
                let error = await #expect(throws: StoreError.self) { try await importLines(lines, into: destination) }
                #expect(error?.message.contains("where its end line counts 27") == true, "\(String(describing: error))")
            }
        }
    }

    @Test func aLineThatIsNotARecordIsNamed() async throws {
        try await TestDatabase.sqlite.withStore(logger: testLogger) { source in
            try await populate(source)
            var lines = try await export(source)
            lines[3] = "{\"type\":\"user\",\"id\":1}"
            try await TestDatabase.sqlite.withStore(logger: testLogger) { destination in
                let error = await #expect(throws: StoreError.self) { try await importLines(lines, into: destination) }
                #expect(error?.message.contains("line 4") == true)
            }
        }
    }
}
