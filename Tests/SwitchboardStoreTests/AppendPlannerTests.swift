import SwitchboardProtocol
import SwitchboardStore
import Testing

/// The rules of appending, without a database.
@Suite("Append planner")
struct AppendPlannerTests {
    private func new(_ content: String, room: String = "r1", user: String = "u1", clientId: String? = nil, now: Int = 5) -> NewMessage {
        NewMessage(roomId: room, userId: user, content: content, clientId: clientId, replyTo: nil, meta: nil, now: now)
    }

    private func counter() -> (Int) -> String {
        var next = 0
        return { _ in
            next += 1
            return "m\(next)"
        }
    }

    @Test func numbersEachRoomOnFromItsLastSeqInCallOrder() throws {
        let plan = AppendPlanner.plan(
            [[new("a"), new("b", room: "r2")], [new("c")]], lastSeqs: ["r1": 7, "r2": 0], stored: [:], makeId: counter())
        #expect(plan.newMessages.map(\.seq) == [8, 1, 9])
        #expect(plan.newMessages.map(\.id) == ["m1", "m2", "m3"])
        #expect(plan.lastSeqs == ["r1": 9, "r2": 1])
        #expect(plan.changedRooms == ["r1", "r2"])
        let results = try plan.results.map { try $0.get() }
        #expect(results.map { $0.map(\.message.content) } == [["a", "b"], ["c"]])
        #expect(results.allSatisfy { $0.allSatisfy { !$0.duplicate } })
    }

    @Test func storedClientIdComesBackAsTheEarlierMessage() throws {
        let earlier = Message(id: "m_old", roomId: "r1", seq: 3, userId: "u1", content: "first", createdAt: 1, clientId: "c-1")
        let calls = [[new("again", clientId: "c-1"), new("other", clientId: "c-2")]]
        let keys = AppendPlanner.clientKeys(of: calls, existingRooms: ["r1"])
        #expect(keys == [ClientKey(roomId: "r1", userId: "u1", clientId: "c-1"), ClientKey(roomId: "r1", userId: "u1", clientId: "c-2")])
        let plan = AppendPlanner.plan(calls, lastSeqs: ["r1": 3], stored: [earlier.clientKey!: earlier], makeId: counter())
        let results = try plan.results[0].get()
        #expect(results[0] == AppendResult(message: earlier, duplicate: true))
        #expect(!results[1].duplicate)
        #expect(results[1].message.seq == 4)
        #expect(plan.newMessages.map(\.content) == ["other"])
    }

    @Test func aRepeatInsideTheSameBatchIsADuplicateOfTheFirst() throws {
        let plan = AppendPlanner.plan([[new("one", clientId: "c")], [new("one again", clientId: "c")]], lastSeqs: ["r1": 0], stored: [:])
        let second = try plan.results[1].get()[0]
        #expect(second.duplicate)
        #expect(second.message == plan.newMessages[0])
        #expect(plan.newMessages.count == 1)
        #expect(plan.lastSeqs["r1"] == 1)
    }

    @Test func theSameClientIdFromAnotherUserOrRoomIsNew() {
        let plan = AppendPlanner.plan(
            [[new("a", clientId: "c"), new("b", user: "u2", clientId: "c"), new("c", room: "r2", clientId: "c")]],
            lastSeqs: ["r1": 0, "r2": 0], stored: [:])
        #expect(plan.newMessages.count == 3)
    }

    @Test func aCallNamingAnUnknownRoomFailsWholeAndTheOthersGoOn() throws {
        let calls = [[new("a"), new("lost", room: "gone", clientId: "x")], [new("b")]]
        #expect(AppendPlanner.clientKeys(of: calls, existingRooms: ["r1"]).isEmpty)
        let plan = AppendPlanner.plan(calls, lastSeqs: ["r1": 0], stored: [:])
        guard case .failure(let error) = plan.results[0] else {
            Issue.record("the call naming an unknown room should fail")
            return
        }
        #expect(error.code == .notFound)
        #expect(error.message.contains("gone"))
        #expect(try plan.results[1].get().map(\.message.seq) == [1])
        #expect(plan.newMessages.map(\.content) == ["b"])
        #expect(plan.readMarkers == [ReadMarker(roomId: "r1", userId: "u1", seq: 1)])
    }

    @Test func sendersReadUpToTheRoomsEndEvenWhenOnlyRepeating() {
        let earlier = Message(id: "m_old", roomId: "r1", seq: 2, userId: "u2", content: "x", createdAt: 1, clientId: "c")
        let plan = AppendPlanner.plan(
            [[new("again", user: "u2", clientId: "c")], [new("a"), new("b")]], lastSeqs: ["r1": 2], stored: [earlier.clientKey!: earlier])
        #expect(Set(plan.readMarkers) == [ReadMarker(roomId: "r1", userId: "u2", seq: 4), ReadMarker(roomId: "r1", userId: "u1", seq: 4)])
    }

    @Test func aNullMetaIsStoredAsNone() {
        var message = new("a")
        message.meta = .null
        #expect(AppendPlanner.plan([[message]], lastSeqs: ["r1": 0], stored: [:]).newMessages[0].meta == nil)
    }

    @Test func historyWindowsFollowThePagingRules() {
        let rows = (1...5).map { Message(id: "m\($0)", roomId: "r", seq: $0, userId: "u", content: "", createdAt: 0) }
        let newest = HistoryWindow(after: nil, before: nil, limit: 2)
        #expect(!newest.ascending && newest.lowerBound == 0 && newest.upperBound == Int.max && newest.fetchCount == 3)
        // Read descending: 5, 4, 3.
        #expect(newest.page(Array(rows.reversed().prefix(3))) == HistoryPage(messages: [rows[3], rows[4]], hasMore: true))
        let up = HistoryWindow(after: 3, before: nil, limit: 10)
        #expect(up.ascending && up.lowerBound == 3)
        #expect(up.page(Array(rows.suffix(2))) == HistoryPage(messages: [rows[3], rows[4]], hasMore: false))
        let empty = HistoryWindow(after: nil, before: nil, limit: -1)
        #expect(empty.pageSize == 0)
        #expect(empty.page([rows[4]]) == HistoryPage(messages: [], hasMore: true))
        #expect(HistoryWindow(after: nil, before: nil, limit: Int.max).fetchCount == Int.max)
    }
}
