import SwitchboardProtocol
import Testing

@testable import SwitchboardServer

@Suite("Typing timers: when an indicator lapses, without a socket or a sleep", .timeLimit(.minutes(1)))
struct TypingTimersTests {
    typealias Timers = TypingTimers<ContinuousClock>
    let start = ContinuousClock.Instant.now
    let key = Timers.Key(roomId: "r1", userId: "u1")

    @Test("an indicator lapses at its deadline, once")
    func lapses() throws {
        var timers = Timers(expiry: .seconds(6))
        let started = timers.typing(key, isTyping: true, now: start)
        let deadline = try #require(started)
        #expect(deadline == start.advanced(by: .seconds(6)))
        #expect(timers.typing(in: "r1") == ["u1"])
        let lapsed = timers.lapse(key, deadline: deadline)
        let lapsedAgain = timers.lapse(key, deadline: deadline)
        #expect(lapsed)
        #expect(!lapsedAgain)
        #expect(timers.count == 0)
    }

    @Test("typing again moves the deadline: the first wake-up does nothing, the second lapses it")
    func renewed() throws {
        var timers = Timers(expiry: .seconds(6))
        let started = timers.typing(key, isTyping: true, now: start)
        let first = try #require(started)
        let renewed = timers.typing(key, isTyping: true, now: start.advanced(by: .seconds(2)))
        let second = try #require(renewed)
        #expect(second > first)
        let staleLapsed = timers.lapse(key, deadline: first)
        #expect(!staleLapsed)
        #expect(timers.typing(in: "r1") == ["u1"])
        let lapsed = timers.lapse(key, deadline: second)
        #expect(lapsed)
    }

    @Test("stopping ends the indicator: no deadline, and its wake-up does nothing")
    func stopped() throws {
        var timers = Timers(expiry: .seconds(6))
        let started = timers.typing(key, isTyping: true, now: start)
        let deadline = try #require(started)
        let stopped = timers.typing(key, isTyping: false, now: start.advanced(by: .seconds(1)))
        #expect(stopped == nil)
        let lapsed = timers.lapse(key, deadline: deadline)
        #expect(!lapsed)
        #expect(timers.count == 0)
    }

    @Test("indicators are per user and per room")
    func perRoomAndUser() {
        var timers = Timers(expiry: .seconds(6))
        _ = timers.typing(Timers.Key(roomId: "r1", userId: "u2"), isTyping: true, now: start)
        _ = timers.typing(key, isTyping: true, now: start)
        _ = timers.typing(Timers.Key(roomId: "r2", userId: "u1"), isTyping: true, now: start)
        #expect(timers.typing(in: "r1") == ["u1", "u2"])
        #expect(timers.typing(in: "r2") == ["u1"])
        #expect(timers.count == 3)
    }
}

@Suite("Presence tracker: online at the first connection, offline after the last", .timeLimit(.minutes(1)))
struct PresenceTrackerTests {
    @Test("the first connection brings a user online, the last takes them offline, those between change nothing")
    func transitions() {
        var presence = PresenceTracker()
        let steps = [
            presence.connected(1, user: "u1"), presence.connected(2, user: "u1"),
        ]
        #expect(steps == [.online, nil])
        #expect(presence.connections(of: "u1") == [1, 2])
        let firstClosed = presence.disconnected(1, user: "u1")
        #expect(firstClosed == nil)
        #expect(presence.isOnline("u1"))
        let lastClosed = presence.disconnected(2, user: "u1")
        #expect(lastClosed == .offline)
        #expect(!presence.isOnline("u1"))
        #expect(presence.userCount == 0)
    }

    @Test("a connection closed twice, or never opened, announces nothing")
    func unknownConnections() {
        var presence = PresenceTracker()
        var steps: [PresenceStatus?] = []
        steps.append(presence.disconnected(9, user: "u1"))
        presence.connected(1, user: "u1")
        steps.append(presence.disconnected(9, user: "u1"))
        steps.append(presence.disconnected(1, user: "u1"))
        steps.append(presence.disconnected(1, user: "u1"))
        #expect(steps == [nil, nil, .offline, nil])
    }

    @Test("online among a room's members lists only those connected, sorted")
    func onlineAmong() {
        var presence = PresenceTracker()
        presence.connected(1, user: "u3")
        presence.connected(2, user: "u1")
        presence.connected(3, user: "u9")
        #expect(presence.online(among: ["u1", "u2", "u3"]) == ["u1", "u3"])
    }
}

@Suite("Join phases: a join's replay, ack and live events without gaps or repeats", .timeLimit(.minutes(1)))
struct JoinPhaseTests {
    @Test("while joining, events are held; after the replay, the messages it did not cover follow in order, with the other events")
    func heldUntilComplete() {
        var phase = JoinPhase<String>.joining()
        let admitted = [
            phase.admit("m5", seq: 5), phase.admit("typing", seq: nil), phase.admit("m6", seq: 6), phase.admit("m7", seq: 7),
        ]
        #expect(admitted == [false, false, false, false])
        // The replay read up to 6: m5 and m6 went out with it.
        let after = phase.complete(replayedThrough: 6)
        #expect(after == ["typing", "m7"])
        let next = [phase.admit("m7 again", seq: 7), phase.admit("m8", seq: 8), phase.admit("typing", seq: nil)]
        #expect(next == [false, true, true])
    }

    @Test("live: a message at or below the newest delivered is not delivered again")
    func liveSkipsRepeats() {
        var phase = JoinPhase<String>.live(lastSeq: 10)
        let admitted = [phase.admit("m10", seq: 10), phase.admit("m11", seq: 11), phase.admit("m9", seq: 9), phase.admit("m12", seq: 12)]
        #expect(admitted == [false, true, false, true])
    }

    @Test("a join again while live holds events again until it completes")
    func rejoin() {
        var phase = JoinPhase<String>.live(lastSeq: 3)
        phase = .joining()
        let held = phase.admit("m4", seq: 4)
        #expect(!held)
        #expect(phase.complete(replayedThrough: 4) == [])
        let next = phase.admit("m5", seq: 5)
        #expect(next)
    }
}

@Suite("Room attendance: join notices at a user's first subscribed connection, leave notices after their last", .timeLimit(.minutes(1)))
struct RoomAttendanceTests {
    @Test("notices are due only at the first subscription and after the last, per room")
    func notices() {
        var attendance = RoomAttendance()
        let steps = [
            attendance.subscribed(user: "u1", to: "r1"),  // join notice
            attendance.subscribed(user: "u1", to: "r1"),  // second connection: none
            attendance.subscribed(user: "u1", to: "r2"),  // another room: join notice
            attendance.unsubscribed(user: "u1", from: "r1"),  // one left in r1: none
            attendance.unsubscribed(user: "u1", from: "r1"),  // last one: leave notice
        ]
        #expect(steps == [true, false, true, false, true])
        #expect(attendance.roomCount == 1)
        attendance.forget("r2")
        #expect(attendance.roomCount == 0)
    }

    @Test("users are counted apart")
    func perUser() {
        var attendance = RoomAttendance()
        let steps = [
            attendance.subscribed(user: "u1", to: "r1"), attendance.subscribed(user: "u2", to: "r1"),
            attendance.unsubscribed(user: "u1", from: "r1"), attendance.unsubscribed(user: "u2", from: "r1"),
        ]
        #expect(steps == [true, true, true, true])
        #expect(attendance.roomCount == 0)
    }
}
