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

@Suite("Room subscribers: who gets each of a room's events, without a socket", .timeLimit(.minutes(1)))
struct RoomSubscribersTests {
    /// Targets are connection numbers: a delivery names the connection it goes to.
    typealias Subscribers = RoomSubscribers<String, Int>

    /// Connections `connections`, of users `u1`, `u2`, …, live in `room` from its start.
    static func live(_ connections: ClosedRange<Int>, in room: String) -> Subscribers {
        var subscribers = Subscribers()
        for connection in connections {
            subscribers.subscribe(connection, user: "u\(connection)", target: connection, to: room, phase: .live(lastSeq: 0))
        }
        return subscribers
    }

    @Test("an event goes to every live subscriber of its room once, and to no other room's")
    func deliversToTheRoomOnly() {
        var subscribers = Self.live(1...3, in: "r1")
        subscribers.subscribe(4, user: "u4", target: 4, to: "r2", phase: .live(lastSeq: 0))
        let deliveries = [
            subscribers.deliver("m1", seq: 1, in: "r1").sorted(), subscribers.deliver("m1", seq: 1, in: "r2"),
            subscribers.deliver("m1", seq: 1, in: "r3"),
        ]
        #expect(deliveries == [[1, 2, 3], [4], []])
        #expect(subscribers.count == 4)
        #expect(subscribers.roomCount == 2)
    }

    @Test("a message is delivered to each connection once: a repeat or an older one is not")
    func noRepeats() {
        var subscribers = Subscribers()
        subscribers.subscribe(1, user: "u1", target: 1, to: "r1", phase: .live(lastSeq: 5))
        let deliveries = [
            subscribers.deliver("m5", seq: 5, in: "r1"), subscribers.deliver("m6", seq: 6, in: "r1"),
            subscribers.deliver("m6", seq: 6, in: "r1"), subscribers.deliver("m4", seq: 4, in: "r1"),
            subscribers.deliver("typing", seq: nil, in: "r1"), subscribers.deliver("typing", seq: nil, in: "r1"),
        ]
        #expect(deliveries == [[], [1], [], [], [1], [1]])
    }

    @Test("the excluded user's connections get nothing, everyone else's do")
    func excludesAUser() {
        var subscribers = Subscribers()
        subscribers.subscribe(1, user: "u1", target: 1, to: "r1", phase: .live(lastSeq: 0))
        subscribers.subscribe(2, user: "u1", target: 2, to: "r1", phase: .live(lastSeq: 0))
        subscribers.subscribe(3, user: "u2", target: 3, to: "r1", phase: .live(lastSeq: 0))
        let deliveries = [
            subscribers.deliver("typing", seq: nil, in: "r1", except: "u1"),
            subscribers.deliver("typing", seq: nil, in: "r1", except: "u2").sorted(),
        ]
        #expect(deliveries == [[3], [1, 2]])
    }

    @Test("a joining connection holds the room's events; its ack goes first, then what the replay did not cover, then live events")
    func joinHoldsEvents() throws {
        var subscribers = Subscribers()
        subscribers.subscribe(1, user: "u1", target: 1, to: "r1", phase: .live(lastSeq: 0))
        subscribers.subscribe(2, user: "u2", target: 2, to: "r1", phase: .joining())
        let whileJoining = [
            subscribers.deliver("m1", seq: 1, in: "r1"), subscribers.deliver("typing", seq: nil, in: "r1"),
            subscribers.deliver("m2", seq: 2, in: "r1"),
        ]
        #expect(whileJoining == [[1], [1], [1]])
        // The replay read up to 1.
        let joined = subscribers.completeJoin(2, in: "r1", replayedThrough: 1)
        #expect(joined?.target == 2)
        #expect(joined?.held == ["typing", "m2"])
        let afterwards = [subscribers.deliver("m2", seq: 2, in: "r1"), subscribers.deliver("m3", seq: 3, in: "r1").sorted()]
        #expect(afterwards == [[], [1, 2]])
        let notSubscribed = subscribers.completeJoin(3, in: "r1", replayedThrough: 3)
        #expect(notSubscribed == nil)
    }

    @Test("subscribing again restarts the phase without a second subscription")
    func subscribeAgain() {
        var subscribers = Subscribers()
        let first = subscribers.subscribe(1, user: "u1", target: 1, to: "r1", phase: .live(lastSeq: 0))
        let again = subscribers.subscribe(1, user: "u1", target: 1, to: "r1", phase: .joining())
        #expect(first && !again)
        #expect(subscribers.count == 1)
        let held = subscribers.deliver("m1", seq: 1, in: "r1")
        #expect(held == [])
        let joined = subscribers.completeJoin(1, in: "r1", replayedThrough: 0)
        #expect(joined?.held == ["m1"])
    }

    @Test("unsubscribing stops the events and forgets the room once empty; the others keep theirs")
    func unsubscribe() {
        var subscribers = Self.live(1...3, in: "r1")
        subscribers.subscribe(1, user: "u1", target: 1, to: "r2", phase: .live(lastSeq: 0))
        #expect(subscribers.rooms(of: 1) == ["r1", "r2"])
        let removed = subscribers.unsubscribe(1, from: "r1")
        let removedTwice = subscribers.unsubscribe(1, from: "r1")
        #expect(removed && !removedTwice)
        #expect(!subscribers.isSubscribed(1, to: "r1"))
        #expect(subscribers.isSubscribed(1, to: "r2"))
        let rest = subscribers.deliver("m1", seq: 1, in: "r1").sorted()
        #expect(rest == [2, 3])
        subscribers.unsubscribe(2, from: "r1")
        subscribers.unsubscribe(3, from: "r1")
        #expect(!subscribers.hasSubscribers("r1"))
        subscribers.unsubscribe(1, from: "r2")
        #expect(subscribers.count == 0)
        #expect(subscribers.roomCount == 0)
        #expect(subscribers.rooms(of: 1).isEmpty)
    }
}

@Suite("Rate limiter: per-key buckets, bounded, never switched off by many keys", .timeLimit(.minutes(1)))
struct RateLimiterTests {
    @Test func aNewKeyIsLimitedEvenAfterTenThousandOthers() {
        let limiter = RateLimiter(perSecond: 10.0 / 60, burst: 10)
        for index in 0...10_000 { _ = limiter.take("user\(index)", now: .zero) }
        let decisions = (0..<11).map { _ in limiter.take("guesser", now: .seconds(1)) }
        #expect(decisions.prefix(10).allSatisfy { $0 == .allowed })
        #expect(decisions.last != .allowed)
    }

    @Test func bucketsFullAgainAreForgottenOnceThereAreMany() {
        let limiter = RateLimiter(perSecond: 1, burst: 5)
        for index in 0...10_000 { _ = limiter.take("user\(index)", now: .zero) }
        #expect(limiter.count == 10_001)
        // A second later every bucket is full again; the next request sweeps them out.
        _ = limiter.take("late", now: .seconds(2))
        #expect(limiter.count == 1)
    }

    @Test func bucketsStillRefillingAreKept() {
        let limiter = RateLimiter(perSecond: 1, burst: 5)
        for index in 0...10_000 {
            for _ in 0..<3 { _ = limiter.take("user\(index)", now: .zero) }
        }
        _ = limiter.take("late", now: .seconds(2))
        #expect(limiter.count == 10_002)
        #expect(limiter.take("user0", now: .seconds(2)) == .allowed)
    }
}
