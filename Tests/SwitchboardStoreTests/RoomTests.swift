import SwitchboardProtocol
import Testing

@testable import SwitchboardSQLite
import SwitchboardStore
import SwitchboardTesting

@Suite("Rooms and members", .timeLimit(.minutes(1)))
struct RoomTests {
    @Test(arguments: TestDatabase.allCases) func createdRoomHasTheCreatorAndTheMembers(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            let ana = try await store.makeUser("ana")
            let bob = try await store.makeUser("bob")
            let room = try await store.makeRoom("General", creator: ana, members: [bob, ana], isPublic: true, now: 5)
            #expect(room.id.hasPrefix("r_"))
            #expect(room.kind == .group)
            #expect(room.isPublic)
            #expect(room.createdAt == 5)
            #expect(room.lastSeq == 0)
            #expect(Set(room.members) == [ana.id, bob.id])
            #expect(room.members.count == 2)
            #expect(try await store.room(id: room.id) == room)
            #expect(try await store.creator(roomId: room.id) == ana.id)
        }
    }

    @Test(arguments: TestDatabase.allCases) func roomWithAnUnknownMemberIsNotFoundAndNotCreated(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            let ana = try await store.makeUser("ana")
            let code = await storeErrorCode {
                try await store.createRoom(NewRoom(name: "x", isPublic: false, creatorId: ana.id, memberIds: ["u_missing"], now: 1))
            }
            #expect(code == .notFound)
            #expect(try await store.allRooms().isEmpty)
        }
    }

    @Test(arguments: TestDatabase.allCases) func roomByNameIgnoresCaseAndPrefersTheOldest(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            let ana = try await store.makeUser("ana")
            let oldest = try await store.makeRoom("Random", creator: ana, now: 1)
            _ = try await store.makeRoom("RANDOM", creator: ana, now: 2)
            #expect(try await store.room(named: "random")?.id == oldest.id)
            #expect(try await store.room(named: "nothing") == nil)
            #expect(try await store.allRooms().count == 2)
        }
    }

    @Test(arguments: TestDatabase.allCases) func addingAndRemovingMembers(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            let ana = try await store.makeUser("ana")
            let bob = try await store.makeUser("bob")
            let room = try await store.makeRoom("General", creator: ana)

            let added = try await store.addMember(roomId: room.id, userId: bob.id, now: 2)
            #expect(Set(added.members) == [ana.id, bob.id])
            #expect(try await store.addMember(roomId: room.id, userId: bob.id, now: 3) == added)
            #expect(await storeErrorCode { try await store.addMember(roomId: "r_missing", userId: bob.id, now: 3) } == .notFound)
            #expect(await storeErrorCode { try await store.addMember(roomId: room.id, userId: "u_missing", now: 3) } == .notFound)

            let removed = try #require(try await store.removeMember(roomId: room.id, userId: bob.id))
            #expect(removed.members == [ana.id])
            #expect(try await store.removeMember(roomId: room.id, userId: bob.id) == nil)
            #expect(try await store.room(id: room.id)?.members == [ana.id])
            #expect(try await store.rooms(memberId: bob.id).isEmpty)
        }
    }

    @Test(arguments: TestDatabase.allCases) func directRoomIsTheSameBothWaysAndHasExactlyTwoMembers(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            let ana = try await store.makeUser("ana")
            let bob = try await store.makeUser("bob")
            let carol = try await store.makeUser("carol")

            let direct = try await store.directRoom(between: bob.id, and: ana.id, now: 7)
            #expect(direct.kind == .direct)
            #expect(!direct.isPublic)
            #expect(direct.name == "ana, bob")
            #expect(Set(direct.members) == [ana.id, bob.id])
            #expect(try await store.directRoom(between: ana.id, and: bob.id, now: 8) == direct)
            #expect(try await store.directRoom(between: bob.id, and: ana.id, now: 9) == direct)
            #expect(try await store.allRooms().count == 1)
            #expect(try await store.creator(roomId: direct.id) == nil)

            #expect(await storeErrorCode { try await store.addMember(roomId: direct.id, userId: carol.id, now: 10) } == .forbidden)
            #expect(await storeErrorCode { try await store.removeMember(roomId: direct.id, userId: ana.id) } == .forbidden)
            #expect(try await store.addMember(roomId: direct.id, userId: ana.id, now: 10) == direct)
            #expect(try await store.room(named: "ana, bob") == nil, "room(named:) finds group rooms only")
        }
    }

    @Test(arguments: TestDatabase.allCases) func directRoomWithYourselfOrAnUnknownUserIsRefused(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            let ana = try await store.makeUser("ana")
            #expect(await storeErrorCode { try await store.directRoom(between: ana.id, and: ana.id, now: 1) } == .forbidden)
            #expect(await storeErrorCode { try await store.directRoom(between: ana.id, and: "u_missing", now: 1) } == .notFound)
            #expect(try await store.allRooms().isEmpty)
        }
    }

    @Test(arguments: TestDatabase.allCases) func concurrentFirstUsesCreateOneDirectRoom(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            let ana = try await store.makeUser("ana")
            let bob = try await store.makeUser("bob")
            let ids = try await withThrowingTaskGroup(of: String.self) { group in
                for index in 0..<20 {
                    group.addTask {
                        let (first, second) = index.isMultiple(of: 2) ? (ana.id, bob.id) : (bob.id, ana.id)
                        return try await store.directRoom(between: first, and: second, now: 1).id
                    }
                }
                return try await group.reduce(into: Set<String>()) { $0.insert($1) }
            }
            #expect(ids.count == 1)
            #expect(try await store.allRooms().count == 1)
        }
    }
}

@Suite("Unread counts and read markers", .timeLimit(.minutes(1)))
struct UnreadTests {
    @Test(arguments: TestDatabase.allCases) func unreadCountsMessagesFromOthersAboveTheReadMarker(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            let ana = try await store.makeUser("ana")
            let bob = try await store.makeUser("bob")
            let room = try await store.makeRoom("General", creator: ana, members: [bob])
            for text in ["one", "two", "three"] { try await store.send(text, in: room, from: ana) }

            let bobs = try #require(try await store.rooms(memberId: bob.id).first)
            #expect(bobs.unread == 3)
            #expect(bobs.lastMessage?.content == "three")
            #expect(bobs.room.lastSeq == 3)
            #expect(try await store.rooms(memberId: ana.id).first?.unread == 0, "sending moves the sender's marker")

            try await store.markRead(roomId: room.id, userId: bob.id, seq: 2)
            #expect(try await store.rooms(memberId: bob.id).first?.unread == 1)
            try await store.markRead(roomId: room.id, userId: bob.id, seq: 1)
            #expect(try await store.rooms(memberId: bob.id).first?.unread == 1, "the marker never moves down")

            try await store.send("four", in: room, from: bob)
            #expect(try await store.rooms(memberId: bob.id).first?.unread == 0)
            #expect(try await store.rooms(memberId: ana.id).first?.unread == 1)
        }
    }

    /// The count comes from `lastSeq`, the marker and the member's own messages above it; those exist
    /// only after leaving and rejoining (the marker starts again at 0), and must still not count.
    @Test(arguments: TestDatabase.allCases) func ownMessagesAboveTheMarkerOfARejoinedMemberDoNotCount(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            let ana = try await store.makeUser("ana")
            let bob = try await store.makeUser("bob")
            let room = try await store.makeRoom("General", creator: ana, members: [bob])
            for (text, sender) in [("a1", ana), ("b1", bob), ("a2", ana), ("b2", bob), ("b3", bob), ("a3", ana)] {
                try await store.send(text, in: room, from: sender)
            }
            #expect(try await store.rooms(memberId: bob.id).first?.unread == 1)

            _ = try await store.removeMember(roomId: room.id, userId: bob.id)
            _ = try await store.addMember(roomId: room.id, userId: bob.id, now: 2)
            #expect(try await store.rooms(memberId: bob.id).first?.unread == 3, "a1, a2, a3; not b1, b2, b3")
            try await store.markRead(roomId: room.id, userId: bob.id, seq: 2)
            #expect(try await store.rooms(memberId: bob.id).first?.unread == 2, "a2, a3")
            try await store.markRead(roomId: room.id, userId: bob.id, seq: 4)
            #expect(try await store.rooms(memberId: bob.id).first?.unread == 1, "a3")
            try await store.send("a4", in: room, from: ana)
            #expect(try await store.rooms(memberId: bob.id).first?.unread == 2, "a3, a4")
            try await store.send("b4", in: room, from: bob)
            #expect(try await store.rooms(memberId: bob.id).first?.unread == 0)
            #expect(try await store.rooms(memberId: ana.id).first?.unread == 1, "b4")
        }
    }

    @Test(arguments: TestDatabase.allCases) func readMarkerStopsAtTheNewestMessage(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            let ana = try await store.makeUser("ana")
            let bob = try await store.makeUser("bob")
            let room = try await store.makeRoom("General", creator: ana, members: [bob])
            try await store.send("one", in: room, from: ana)
            try await store.markRead(roomId: room.id, userId: bob.id, seq: 99)
            try await store.send("two", in: room, from: ana)
            #expect(try await store.rooms(memberId: bob.id).first?.unread == 1)
        }
    }

    @Test(arguments: TestDatabase.allCases) func roomsListEveryRoomOfTheMemberWithoutLastMessageWhenEmpty(_ database: TestDatabase) async throws {
        try await withStore(database) { store in
            let ana = try await store.makeUser("ana")
            let bob = try await store.makeUser("bob")
            let quiet = try await store.makeRoom("Quiet", creator: ana, now: 1)
            let busy = try await store.makeRoom("Busy", creator: ana, now: 2)
            _ = try await store.makeRoom("Bob's", creator: bob, now: 3)
            try await store.send("hello", in: busy, from: ana)

            let summaries = try await store.rooms(memberId: ana.id)
            #expect(summaries.map(\.room.id) == [busy.id, quiet.id])
            #expect(summaries.last?.lastMessage == nil)
            #expect(summaries.last?.unread == 0)
        }
    }
}
