import Foundation
import Synchronization
import SwitchboardProtocol
import SwitchboardServer
import SwitchboardTesting
import Testing

@Suite("Recovery: join with since replays in order, then acks, then goes live", .timeLimit(.minutes(1)))
struct RecoveryTests {
    /// Sends a `join` with `since` and returns, in arrival order, the message frames of the room
    /// that came before its ack, and the ack.
    static func joinCollectingReplay(_ socket: TestSocket, roomId: String, since: Int?) async throws -> (replay: [Message], ack: TestFrame) {
        let ref = socket.makeRef()
        try await socket.send("join", roomId: roomId, data: since.map { ["since": .integer(Int64($0))] }, ref: ref)
        var replay: [Message] = []
        while true {
            let frame = try await socket.next { ($0.type == "message" && $0.roomId == roomId) || $0.ref == ref }
            if frame.ref == ref { return (replay, frame) }
            let message = try frame.decode(Message.self)
            #expect(frame.userId == message.userId, "a replayed message's envelope names its author: \(frame.raw)")
            #expect(frame.ref == nil)
            replay.append(message)
        }
    }

    @Test("join with since replays every later message in order, then the ack, then live ones above lastSeq")
    func replayThenLive() async throws {
        try await withServer(unlimitedRate) { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("team", token: alice.token, members: [bob.user.id])
            let sender = try await server.connect(token: alice.token)
            try await sender.fill(room.id, count: 5)

            let socket = try await server.connect(token: bob.token)
            let (replay, ackFrame) = try await Self.joinCollectingReplay(socket, roomId: room.id, since: 2)
            expectAck(ackFrame, roomId: room.id)
            let ack = try ackFrame.decode(JoinAck.self)
            #expect(seqs(replay) == [3, 4, 5])
            #expect(replay.map(\.content) == ["m 3", "m 4", "m 5"])
            #expect(ack.replayed == 3)
            #expect(ack.lastSeq == 5)
            #expect(ack.truncated == false)
            #expect(ack.room.lastSeq == 5)

            try await sender.sendMessage("live", roomId: room.id)
            let live = try await socket.messages(1, in: room.id)
            #expect(seqs(live) == [6])
            #expect(live.first?.content == "live")
            await sender.close()
            await socket.close()
        }
    }

    @Test("since 0 replays everything; since equal to or above lastSeq replays nothing")
    func sinceEdges() async throws {
        try await withServer(unlimitedRate) { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            let sender = try await server.connect(token: alice.token)
            try await sender.fill(room.id, count: 5)

            // Each round adds a message: lastSeq is 5, then 6, then 7.
            for (round, since) in [0, 6, 107].enumerated() {
                let lastSeq = 5 + round
                let expected = since < lastSeq ? Array((since + 1)...lastSeq) : []
                let socket = try await server.connect(token: alice.token)
                let (replay, ackFrame) = try await Self.joinCollectingReplay(socket, roomId: room.id, since: since)
                let ack = try ackFrame.decode(JoinAck.self)
                #expect(seqs(replay) == expected, "since \(since)")
                #expect(ack.replayed == expected.count, "since \(since)")
                #expect(ack.lastSeq == lastSeq)
                #expect(ack.truncated == false)
                try await sender.sendMessage("after since \(since)", roomId: room.id)
                let live = try await socket.messages(1, in: room.id)
                #expect(live.first?.content == "after since \(since)")
                #expect(live.first.map { $0.seq > ack.lastSeq } == true)
                await socket.close()
            }
            await sender.close()
        }
    }

    @Test("a negative or non-integer since is invalid, and the connection goes on")
    func badSince() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            let socket = try await server.connect(token: alice.token)
            for since in [-1, "3", 1.5, true] as [JSONValue] {
                let answer = try await socket.request("join", roomId: room.id, data: ["since": since])
                expectErrorFrame(answer, "invalid", roomId: room.id)
            }
            let ack = try await socket.join(room.id, since: 0)
            #expect(ack.replayed == 0)
            await socket.close()
        }
    }

    @Test("exactly the replay cap is replayed whole")
    func exactlyCap() async throws {
        try await withServer({ unlimitedRate(&$0); $0.limits.replayCap = 20 }) { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            let sender = try await server.connect(token: alice.token)
            try await sender.fill(room.id, count: 25)
            let socket = try await server.connect(token: alice.token)
            let (replay, ackFrame) = try await Self.joinCollectingReplay(socket, roomId: room.id, since: 5)
            let ack = try ackFrame.decode(JoinAck.self)
            #expect(seqs(replay) == Array(6...25))
            #expect(ack.replayed == 20)
            #expect(ack.truncated == false)
            #expect(ack.lastSeq == 25)
            await sender.close()
            await socket.close()
        }
    }

    @Test("one past the cap: nothing replayed, truncated; after=since pages recover everything while live messages flow")
    func pastCap() async throws {
        try await withServer({ unlimitedRate(&$0); $0.limits.replayCap = 20 }) { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("team", token: alice.token)
            let sender = try await server.connect(token: alice.token)
            try await sender.fill(room.id, count: 25)
            let socket = try await server.connect(token: alice.token)
            let (replay, ackFrame) = try await Self.joinCollectingReplay(socket, roomId: room.id, since: 4)
            let ack = try ackFrame.decode(JoinAck.self)
            #expect(replay.isEmpty, "no partial recovery")
            #expect(ack.replayed == 0)
            #expect(ack.truncated == true)
            #expect(ack.lastSeq == 25)

            // Live messages keep coming while the client pages.
            try await sender.sendMessage("live 1", roomId: room.id)
            var recovered: [Message] = []
            var after = 4
            while after < ack.lastSeq {
                let page = try await server.history(room.id, token: alice.token, query: "after=\(after)&limit=7")
                let last = try #require(page.messages.last, "empty page before lastSeq")
                recovered += page.messages
                after = last.seq
            }
            #expect(seqs(recovered).prefix(21) == ArraySlice(5...25))
            let live = try await socket.messages(1, in: room.id)
            #expect(seqs(live) == [26])
            await sender.close()
            await socket.close()
        }
    }

    @Test("rejoining while another client keeps sending: no gap, no repeat")
    func concurrentRejoin() async throws {
        try await withServer(unlimitedRate) { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("busy", token: alice.token, members: [bob.user.id])
            let total = 300

            var socket = try await server.connect(token: bob.token)
            let first = try await socket.join(room.id)
            #expect(first.lastSeq == 0)

            let sender = try await server.connect(token: alice.token)
            let sending = Task {
                for index in 1...total {
                    try await sender.sendMessage("n \(index)", roomId: room.id)
                }
            }

            // Bob reads part of the stream, drops the connection, and rejoins with since, three times over.
            var seen: [Int] = []
            var lastSeen = first.lastSeq
            var reconnects = 0
            while lastSeen < total {
                let message = try await socket.messages(1, in: room.id, timeout: .seconds(20))[0]
                seen.append(message.seq)
                lastSeen = message.seq
                if reconnects < 3, lastSeen >= 40 * (reconnects + 1) {
                    reconnects += 1
                    await socket.close()
                    socket = try await server.connect(token: bob.token)
                    let (replay, ackFrame) = try await Self.joinCollectingReplay(socket, roomId: room.id, since: lastSeen)
                    let ack = try ackFrame.decode(JoinAck.self)
                    #expect(ack.truncated == false)
                    #expect(ack.replayed == replay.count)
                    #expect(replay.allSatisfy { $0.seq <= ack.lastSeq })
                    seen += seqs(replay)
                    lastSeen = max(lastSeen, replay.last?.seq ?? lastSeen)
                    // Whatever comes live next must be above the ack's lastSeq.
                    if ack.lastSeq < total {
                        let next = try await socket.messages(1, in: room.id, timeout: .seconds(20))[0]
                        #expect(next.seq == ack.lastSeq + 1, "first live message after the ack")
                        seen.append(next.seq)
                        lastSeen = next.seq
                    }
                }
            }
            try await sending.value
            #expect(reconnects == 3)
            let start = first.lastSeq + 1
            #expect(seen == Array(start...total), "gaps or repeats: \(Self.describeGaps(seen, from: start, to: total))")
            #expect(await socket.nothing(for: .milliseconds(200)) { $0.type == "message" } == nil)
            await socket.close()
            await sender.close()
        }
    }

    static func describeGaps(_ seqs: [Int], from start: Int, to end: Int) -> String {
        var counts: [Int: Int] = [:]
        for seq in seqs { counts[seq, default: 0] += 1 }
        let missing = (start...max(start, end)).filter { counts[$0] == nil }
        let repeated = counts.filter { $0.value > 1 }.keys.sorted()
        return "missing \(missing.prefix(20)), repeated \(repeated.prefix(20))"
    }
}
