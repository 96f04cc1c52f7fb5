import Foundation
import SwitchboardProtocol
import SwitchboardServer
import SwitchboardTesting
import Testing

extension RawClient {
    /// A client frame that may break the rules: not final, unmasked, with a reserved bit set.
    static func clientFrame(opcode: UInt8, payload: [UInt8], fin: Bool, masked: Bool = true, rsv1: Bool = false) -> [UInt8] {
        var frame: [UInt8]
        if masked {
            frame = clientFrame(opcode: opcode, payload: payload)
        } else {
            precondition(payload.count < 126, "unmasked test frames are small")
            frame = [0x80 | opcode, UInt8(payload.count)] + payload
        }
        if !fin { frame[0] &= 0x7F }
        if rsv1 { frame[0] |= 0x40 }
        return frame
    }

    /// Sends `bytes` and returns the close code the server answers with, once it has closed.
    func closeCode(after bytes: [UInt8]) async throws -> Int? {
        try await write(bytes)
        let frames = try await waitUntilClosed(timeout: .seconds(10), keepPayloads: true)
        return frames.first { $0.opcode == 0x8 }?.closeCode
    }
}

/// Opens a raw WebSocket of a new user.
private func rawSocket(_ server: TestServer, _ name: String = "alice") async throws -> RawClient {
    let user = try await server.register(name)
    let (client, response) = try await RawClient.upgrade(port: server.port, token: user.token)
    #expect(response.status == 101, "\(response.head)")
    return client
}

private func closePayload(_ code: Int, _ reason: String = "") -> [UInt8] {
    [UInt8(code >> 8), UInt8(code & 0xFF)] + Array(reason.utf8)
}

@Suite("WebSocket frame rules over a raw socket", .timeLimit(.minutes(1)))
struct WebSocketFrameTests {
    @Test("a ping frame gets a pong with its bytes; an unsolicited pong changes nothing")
    func pingAndPong() async throws {
        try await withServer { server in
            let client = try await rawSocket(server)
            try await client.write(RawClient.clientFrame(opcode: 0x9, payload: Array("are you there".utf8)))
            let pong = try await client.nextFrame()
            #expect(pong?.opcode == 0xA)
            #expect(pong?.text == "are you there")
            try await client.write(RawClient.clientFrame(opcode: 0xA, payload: [1, 2, 3]))
            try await client.sendText(#"{"type": "ping", "ref": "after"}"#)
            let answer = try await client.frame(withRef: "after")
            #expect(answer.text.contains(#""type":"pong""#), "\(answer.text)")
            #expect(!client.isClosed)
            await client.close()
        }
    }

    @Test(
        "protocol errors close with 1002",
        arguments: [
            ("control frame over 125 bytes", RawClient.clientFrame(opcode: 0x9, payload: Array(repeating: 0x61, count: 126))),
            ("fragmented control frame", RawClient.clientFrame(opcode: 0x9, payload: [1], fin: false)),
            ("unmasked frame", RawClient.clientFrame(opcode: 0x1, payload: Array(#"{"type":"ping"}"#.utf8), fin: true, masked: false)),
            ("reserved bit", RawClient.clientFrame(opcode: 0x1, payload: Array(#"{"type":"ping"}"#.utf8), fin: true, rsv1: true)),
            ("reserved opcode", RawClient.clientFrame(opcode: 0x3, payload: [])),
            ("continuation without a message", RawClient.clientFrame(opcode: 0x0, payload: Array("x".utf8))),
            (
                "a new message inside a fragmented one",
                RawClient.clientFrame(opcode: 0x1, payload: Array("{".utf8), fin: false) + RawClient.clientFrame(opcode: 0x1, payload: Array("{}".utf8))
            ),
            ("close code of one byte", RawClient.clientFrame(opcode: 0x8, payload: [0x03])),
            ("close code 1005, which no frame may carry", RawClient.clientFrame(opcode: 0x8, payload: closePayload(1005))),
        ] as [(String, [UInt8])]
    )
    func protocolError(name: String, bytes: [UInt8]) async throws {
        try await withServer { server in
            let client = try await rawSocket(server)
            #expect(try await client.closeCode(after: bytes) == 1002, "\(name)")
        }
    }

    @Test("a close the server starts reaches a client that reads late as a close frame, even when more of its bytes wait unread")
    func closeFrameIsNotLostToAReset() async throws {
        try await withServer({ $0.pingTimeout = .seconds(1) }) { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            _ = try await server.createRoom("team", token: alice.token, members: [bob.user.id])
            let bobSocket = try await server.connect(token: bob.token)
            let (client, response) = try await RawClient.upgrade(port: server.port, token: alice.token)
            #expect(response.status == 101)
            _ = try await bobSocket.next(where: PresenceTypingTests.isPresence(of: alice.user.id, "online"))
            // A bad frame, then 256 KB the server will not read before it closes: closing a socket
            // with unread bytes makes the kernel answer with a reset, and a client that has not read
            // the close frame yet loses it.
            try await client.setReading(false)
            let bad = RawClient.clientFrame(opcode: 0x1, payload: Array(#"{"type":"ping"}"#.utf8), fin: true, masked: false)
            let unread = (0..<2_048).flatMap { _ in RawClient.clientFrame(opcode: 0x1, payload: Array(repeating: 0x20, count: 120)) }
            try await client.write(bad + unread)
            // The session ends once the server is done with the connection.
            _ = try await bobSocket.next(where: PresenceTypingTests.isPresence(of: alice.user.id, "offline"))
            // A reset has closed the client's side already: then there is nothing to read.
            try? await client.setReading(true)
            let frames = try await client.waitUntilClosed(timeout: .seconds(10), keepPayloads: true)
            #expect(frames.first { $0.opcode == 0x8 }?.closeCode == 1002)
            await bobSocket.close()
        }
    }

    @Test("a close the server starts ends the session at once: the others see the user leave before the client answers")
    func serverCloseEndsTheSessionAtOnce() async throws {
        // The close waits up to the ping timeout for the client's answer; the session must not.
        try await withServer({ $0.pingTimeout = .seconds(50) }) { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            _ = try await server.createRoom("team", token: alice.token, members: [bob.user.id])
            let bobSocket = try await server.connect(token: bob.token)
            let (client, response) = try await RawClient.upgrade(port: server.port, token: alice.token, staysOpenAfterServerEnds: true)
            #expect(response.status == 101)
            _ = try await bobSocket.next(where: PresenceTypingTests.isPresence(of: alice.user.id, "online"))
            try await client.write(RawClient.clientFrame(opcode: 0x1, payload: Array(#"{"type":"ping"}"#.utf8), fin: true, masked: false))
            #expect(try await client.nextFrame()?.closeCode == 1002)
            // Alice neither answers the close nor closes her side: still, she is gone at once.
            _ = try await bobSocket.next(timeout: .seconds(10), where: PresenceTypingTests.isPresence(of: alice.user.id, "offline"))
            #expect(!client.isClosed)
            await client.close()
            await bobSocket.close()
        }
    }

    @Test("requests read before a bad frame are answered before the close")
    func requestsBeforeABadFrameAreAnswered() async throws {
        try await withServer { server in
            let client = try await rawSocket(server)
            // The session is open (requests that wait for it are dropped by a close).
            try await client.sendText(#"{"type":"ping","ref":"open"}"#)
            _ = try await client.frame(withRef: "open")
            let ping = RawClient.clientFrame(opcode: 0x1, payload: Array(#"{"type":"ping","ref":"before"}"#.utf8))
            let bad = RawClient.clientFrame(opcode: 0x1, payload: Array(#"{"type":"ping"}"#.utf8), fin: true, rsv1: true)
            try await client.write(ping + bad)
            let frames = try await client.waitUntilClosed(timeout: .seconds(15), keepPayloads: true)
            #expect(frames.count == 2)
            #expect(frames.first?.text.contains(#""ref":"before""#) == true)
            #expect(frames.last?.closeCode == 1002)
        }
    }

    @Test("pings from a client that does not read are answered only while its socket takes them: no pongs pile up in the server")
    func pingsWithoutReadingQueueNoPongs() async throws {
        let contentLength = 1 << 20
        try await withServer({
            largeBacklog(&$0, contentLength: contentLength)
            // The raw client answers no ping of the server's.
            $0.pingInterval = .seconds(600)
        }) { server in
            let alice = try await server.register("alice")
            let carol = try await server.register("carol")
            let room = try await server.createRoom("firehose", token: alice.token, members: [carol.user.id])
            let (stalled, response) = try await RawClient.upgrade(port: server.port, token: carol.token, receiveBufferSize: 4096)
            #expect(response.status == 101)
            try await stalled.sendText(json(#"{"type": "join", "roomId": "ROOM", "ref": "join"}"#, roomId: room.id))
            _ = try await stalled.frame(withRef: "join")
            try await stalled.setReading(false)
            // More than the kernel's buffers hold: past them, carol's socket takes no more writes.
            let watcher = try await server.connect(token: alice.token)
            let body = String(repeating: "x", count: contentLength)
            for index in 1...(2 * SlowConsumerTests.kernelSendBufferMax() / contentLength + 4) {
                _ = try await watcher.sendMessage("\(index) \(body)", roomId: room.id)
            }
            // Only now, so that alice is not sent her own large messages.
            try await watcher.join(room.id)
            let pings = 2_000
            let ping = RawClient.clientFrame(opcode: 0x9, payload: Array(repeating: 0x70, count: 125))
            for _ in 0..<(pings / 500) { try await stalled.write((0..<500).flatMap { _ in ping }) }
            // A connection's requests are answered in the order read: once alice sees this message,
            // the server has read every ping before it, all while carol's socket took no writes.
            // (Reading again before that, on a busy machine, let the server read pings while carol
            // drained her backlog, and answer those: 756 of 2,000 once.)
            try await stalled.sendText(json(#"{"type":"message","roomId":"ROOM","ref":"after","data":{"content":"after"}}"#, roomId: room.id))
            _ = try await watcher.next(timeout: .seconds(40)) { $0.type == "message" && $0.data?["content"]?.stringValue == "after" }
            try await stalled.setReading(true)
            let before = try await stalled.countFramesThrough(ref: "after", timeout: .seconds(40))
            // The newest ping is answered once the socket takes writes again (around the answer
            // above, which was queued while it took none); the others are not.
            try await stalled.sendText(#"{"type":"ping","ref":"final"}"#)
            let after = try await stalled.countFramesThrough(ref: "final")
            let pongs = (before[0xA] ?? 0) + (after[0xA] ?? 0)
            #expect(pongs >= 1)
            #expect(pongs < pings / 10, "\(pongs) pongs for \(pings) pings")
            #expect(!stalled.isClosed)
            await stalled.close()
            await watcher.close()
        }
    }

    @Test("a message whose fragments add up to more than the limit closes with 1009, and is not stored")
    func fragmentsTooLarge() async throws {
        try await withServer({ $0.limits.maxFrameBytes = 1024 }) { server in
            let alice = try await server.register("alice")
            let room = try await server.createRoom("big", token: alice.token)
            let (client, _) = try await RawClient.upgrade(port: server.port, token: alice.token)
            let text = Array(json(#"{"type":"message","roomId":"ROOM","ref":"r","data":{"content":"PAD"}}"#, roomId: room.id)
                .replacingOccurrences(of: "PAD", with: String(repeating: "x", count: 1500)).utf8)
            // Every fragment is under the limit, their sum is not.
            var bytes: [UInt8] = []
            for (index, start) in stride(from: 0, to: text.count, by: 600).enumerated() {
                let chunk = Array(text[start..<min(start + 600, text.count)])
                bytes += RawClient.clientFrame(opcode: index == 0 ? 0x1 : 0x0, payload: chunk, fin: start + 600 >= text.count)
            }
            #expect(try await client.closeCode(after: bytes) == 1009)
            #expect(try await server.allMessages(room.id, token: alice.token).isEmpty)
        }
    }

    @Test("a binary message gets the protocol's invalid error, once, and the connection goes on")
    func binary() async throws {
        try await withServer { server in
            let client = try await rawSocket(server)
            try await client.write(
                RawClient.clientFrame(opcode: 0x2, payload: [1, 2], fin: false) + RawClient.clientFrame(opcode: 0x0, payload: [3], fin: true))
            try await client.sendText(#"{"type": "ping", "ref": "after"}"#)
            let frames = try await client.framesThrough(ref: "after")
            let errors = frames.filter { $0.text.contains(#""type":"error""#) }
            #expect(errors.count == 1, "\(frames.map(\.text))")
            #expect(errors.first?.text.contains(#""code":"invalid""#) == true)
            #expect(!client.isClosed)
            await client.close()
        }
    }

    @Test("a client's close is answered with its code, then the server ends the connection", arguments: [1000, 1001, 4000])
    func closeEchoed(code: Int) async throws {
        try await withServer { server in
            let client = try await rawSocket(server)
            #expect(try await client.closeCode(after: RawClient.clientFrame(opcode: 0x8, payload: closePayload(code, "bye"))) == code)
            #expect(client.isClosed)
        }
    }

    @Test("after the upgrade nothing is read as HTTP: a request's bytes are a bad frame, closed with 1002")
    func httpAfterUpgrade() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let client = try await rawSocket(server, "bob")
            let request = "GET /api/me HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(alice.token)\r\n\r\n"
            try await client.write(Array(request.utf8))
            let frames = try await client.waitUntilClosed(timeout: .seconds(10), keepPayloads: true)
            #expect(frames.first?.closeCode == 1002, "\(frames.map { ($0.opcode, $0.text) })")
            #expect(!frames.contains { $0.text.contains("HTTP/1.1") || $0.text.contains(alice.user.id) })
        }
    }

    @Test("a message far larger than the first receive buffer arrives whole, after small ones")
    func largeMessageAfterSmallOnes() async throws {
        try await withServer { server in
            let client = try await rawSocket(server)
            for number in 0..<3 {
                try await client.sendText(#"{"type": "ping", "ref": "small-\#(number)"}"#)
                _ = try await client.frame(withRef: "small-\(number)")
            }
            let padding = String(repeating: "0123456789", count: 4_000)
            try await client.sendText(#"{"type": "ping", "ref": "large", "data": {"padding": "\#(padding)"}}"#)
            let pong = try await client.frame(withRef: "large")
            #expect(pong.text.contains(#""type":"pong""#))
            #expect(pong.text.contains(padding))
            #expect(!client.isClosed)
            await client.close()
        }
    }

    @Test("an upgrade of another path than /ws is refused with 400 and an error body; /ws/ is /ws")
    func otherPath() async throws {
        try await withServer { server in
            let alice = try await server.register("alice")
            let (_, refused) = try await RawClient.upgrade(port: server.port, path: "/api/me", token: alice.token)
            #expect(refused.status == 400, "\(refused.head)")
            // With the body every HTTP error has.
            let error = try Wire.decode(ErrorResponse.self, from: refused.text).error
            #expect(error.code == .invalid)
            #expect(error.message.contains("/ws"), "\(error.message)")
            let (client, accepted) = try await RawClient.upgrade(port: server.port, path: "/ws/", token: alice.token)
            #expect(accepted.status == 101, "\(accepted.head)")
            await client.close()
        }
    }
}

@Suite("WebSocket write batching", .timeLimit(.minutes(1)))
struct WriteBatchingTests {
    @Test("with a write delay, every message reaches every subscriber, once and in order")
    func writeDelay() async throws {
        try await withServer({ unlimitedRate(&$0); $0.writeDelay = .milliseconds(5) }) { server in
            let alice = try await server.register("alice")
            let bob = try await server.register("bob")
            let room = try await server.createRoom("batched", token: alice.token, members: [bob.user.id])
            let sender = try await server.connect(token: alice.token)
            let reader = try await server.connect(token: bob.token)
            try await reader.join(room.id)
            let sent = try await sender.fill(room.id, count: 50)
            let received = try await reader.messages(50, in: room.id)
            #expect(received.map(\.id) == sent.map(\.id))
            #expect(seqs(received) == seqs(sent))
            try await reader.roundTrip()
            #expect(await reader.nothing(for: .milliseconds(100)) { $0.type == "message" } == nil, "a message came twice")
            await sender.close()
            await reader.close()
        }
    }
}
