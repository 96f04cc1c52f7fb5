import Foundation
import SwitchboardProtocol
import SwitchboardServer
import SwitchboardTesting
import Testing

@Suite("Slow consumers never slow a room", .timeLimit(.minutes(1)))
struct SlowConsumerTests {
    @Test("a subscriber that never reads is closed; a normal subscriber gets every message promptly, in order")
    func slowConsumer() async throws {
        // The kernel buffers what a socket cannot send (up to tcp_wmem's maximum, 4 MiB by default on
        // Linux) before the server sees anything unsent: send twice that to each subscriber.
        let total = 300
        let contentLength = max(16 * 1024, 2 * Self.kernelSendBufferMax() / total)
        try await withServer({
            unlimitedRate(&$0)
            $0.maxOutboundBytes = 64 * 1024
            $0.limits.maxContentLength = contentLength + 100
            $0.limits.maxFrameBytes = contentLength + 64 * 1024
        }) { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let carol = try await server.register("carol")
            let room = try await server.createRoom("firehose", token: alice.token, members: [bob.user.id, carol.user.id])

            // Carol: a raw client with a tiny receive buffer that joins, then stops reading.
            let (slow, response) = try await RawClient.upgrade(port: server.port, token: carol.token, receiveBufferSize: 4096)
            #expect(response.status == 101, "\(response.head)")
            try await slow.sendText(json(#"{"type": "join", "roomId": "ROOM", "ref": "slow-join"}"#, roomId: room.id))
            let joinAck = try await slow.frame(withRef: "slow-join")
            #expect(joinAck.text.contains("\"ack\""), "\(joinAck.text)")
            try await slow.setReading(false)

            let normal = try await server.connect(token: bob.token)
            try await normal.join(room.id)
            let sender = try await server.connect(token: alice.token)

            let body = String(repeating: "x", count: contentLength)
            let started = ContinuousClock.now
            let sending = Task {
                for index in 1...total {
                    try await sender.sendMessage("\(index) \(body)", roomId: room.id)
                }
            }
            var received: [Int] = []
            for _ in 1...total {
                let message = try await normal.messages(1, in: room.id, timeout: .seconds(10))[0]
                received.append(message.seq)
            }
            try await sending.value
            let elapsed = ContinuousClock.now - started
            #expect(received == Array(1...total), "\(RecoveryTests.describeGaps(received, from: 1, to: total))")
            #expect(elapsed < .seconds(30), "the normal subscriber took \(elapsed)")

            // The server dropped the slow connection: carol left the room, as bob sees.
            let left = try await normal.next(timeout: .seconds(10)) { $0.type == "leave" && $0.userId == carol.user.id }
            #expect(left.roomId == room.id)

            // And the slow client, reading again, finds its connection ended before the whole stream.
            try await slow.setReading(true)
            let frames = try await slow.waitUntilClosed(timeout: .seconds(20), keepPayloads: true)
            let texts = frames.filter { $0.opcode == 0x1 && $0.text.contains(#""type":"message""#) }.count
            #expect(texts < total, "the slow client got all \(texts) frames: it was not dropped")
            if let close = frames.first(where: { $0.opcode == 0x8 }) {
                #expect(close.closeCode == 1013, "close code \(close.closeCode.map(String.init) ?? "none")")
            }
            #expect(slow.isClosed)

            // The room is unharmed: the normal subscriber and the sender go on.
            try await sender.sendMessage("after", roomId: room.id)
            #expect(try await normal.messages(1, in: room.id).first?.seq == total + 1)
            await normal.close()
            await sender.close()
        }
    }

    /// The largest send buffer the kernel grows a TCP socket to (Linux), or 8 MiB when unknown.
    static func kernelSendBufferMax() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/tcp_wmem", encoding: .utf8),
            let last = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).last, let value = Int(last)
        else { return 8 << 20 }
        return value
    }
}
