import NIOCore
import NIOWebSocket
@testable import SwitchboardServer
import Testing

/// A frame as a client sends it: masked, unless told otherwise.
private func clientFrame(
    _ opcode: WebSocketOpcode, _ payload: [UInt8], fin: Bool = true, masked: Bool = true, rsv1: Bool = false
) -> WebSocketFrame {
    var data = ByteBuffer(bytes: payload)
    let key: WebSocketMaskingKey? = masked ? WebSocketMaskingKey([0x12, 0x34, 0x56, 0x78]) : nil
    if let key { data.webSocketMask(key) }
    return WebSocketFrame(fin: fin, rsv1: rsv1, opcode: opcode, maskKey: key, data: data)
}

private func clientFrame(_ opcode: WebSocketOpcode, _ text: String, fin: Bool = true) -> WebSocketFrame {
    clientFrame(opcode, Array(text.utf8), fin: fin)
}

private func closePayload(_ code: UInt16, _ reason: [UInt8] = []) -> [UInt8] {
    [UInt8(code >> 8), UInt8(code & 0xFF)] + reason
}

@Suite("WebSocket frame rules (RFC 6455), without a socket", .timeLimit(.minutes(1)))
struct WebSocketConnectionMachineTests {
    @Test("a text frame is a message; fragments are assembled, a character split between them included")
    func textAndFragments() {
        var machine = WebSocketConnectionMachine(maxMessageBytes: 100)
        #expect(machine.received(clientFrame(.text, "hello")) == .text("hello"))
        let bytes = Array("é😀!".utf8)
        #expect(machine.received(clientFrame(.text, Array(bytes[0..<3]), fin: false)) == WebSocketConnectionMachine.Action.none)
        // A ping between fragments is answered at once.
        #expect(machine.received(clientFrame(.ping, [1, 2])) == .pong(ByteBuffer(bytes: [1, 2])))
        #expect(machine.received(clientFrame(.continuation, Array(bytes[3..<5]), fin: false)) == WebSocketConnectionMachine.Action.none)
        #expect(machine.received(clientFrame(.continuation, Array(bytes[5...]))) == .text("é😀!"))
        #expect(machine.received(clientFrame(.text, "next")) == .text("next"))
    }

    @Test("a binary message is refused once, however many fragments it has")
    func binary() {
        var machine = WebSocketConnectionMachine(maxMessageBytes: 100)
        #expect(machine.received(clientFrame(.binary, [1, 2, 3], fin: false)) == WebSocketConnectionMachine.Action.none)
        #expect(machine.received(clientFrame(.continuation, [0xFF])) == .binary)
        #expect(machine.received(clientFrame(.text, "still open")) == .text("still open"))
    }

    @Test("pings get pongs with their bytes; a pong, asked for or not, is only noted")
    func pingPong() {
        var machine = WebSocketConnectionMachine(maxMessageBytes: 100)
        #expect(machine.received(clientFrame(.ping, [])) == .pong(ByteBuffer()))
        #expect(machine.received(clientFrame(.ping, Array(repeating: 7, count: 125))) == .pong(ByteBuffer(bytes: Array(repeating: 7, count: 125))))
        #expect(machine.received(clientFrame(.pong, [9])) == .pongReceived)
        #expect(!machine.isClosed)
    }

    @Test(
        "protocol errors close with 1002",
        arguments: [
            ("unmasked", [clientFrame(.text, Array("hi".utf8), masked: false)]),
            ("reserved bit", [clientFrame(.text, Array("hi".utf8), rsv1: true)]),
            ("reserved opcode", [clientFrame(WebSocketOpcode(encodedWebSocketOpcode: 0x3)!, [])]),
            ("control frame over 125 bytes", [clientFrame(.ping, Array(repeating: 0, count: 126))]),
            ("fragmented control frame", [clientFrame(.ping, [1], fin: false)]),
            ("continuation without a message", [clientFrame(.continuation, Array("x".utf8))]),
            ("new message inside a fragmented one", [clientFrame(.text, Array("a".utf8), fin: false), clientFrame(.text, Array("b".utf8))]),
            ("close code of one byte", [clientFrame(.connectionClose, [0x03])]),
            ("close code not allowed", [clientFrame(.connectionClose, closePayload(1005))]),
            ("close code unassigned", [clientFrame(.connectionClose, closePayload(2000))]),
        ] as [(String, [WebSocketFrame])]
    )
    func protocolErrors(name: String, frames: [WebSocketFrame]) {
        var machine = WebSocketConnectionMachine(maxMessageBytes: 100)
        var actions = frames.map { machine.received($0) }
        guard case .close(let code, _) = actions.removeLast() else {
            Issue.record("\(name): not closed")
            return
        }
        #expect(code == .protocolError, "\(name)")
        #expect(machine.isClosed)
        #expect(machine.received(clientFrame(.text, "after")) == WebSocketConnectionMachine.Action.none, "nothing is read after the close")
    }

    @Test("invalid UTF-8 closes with 1007: in one frame, across fragments, cut short at the end, in a close reason")
    func invalidUTF8() {
        for frames in [
            [clientFrame(.text, [0x61, 0xC3, 0x28])],
            [clientFrame(.text, [0xE2, 0x82], fin: false), clientFrame(.continuation, [0x28])],
            [clientFrame(.text, [0x61, 0xF0, 0x9F])],
            [clientFrame(.text, [0xED, 0xA0, 0x80])],  // a surrogate
            [clientFrame(.connectionClose, closePayload(1000, [0xFF]))],
        ] {
            var machine = WebSocketConnectionMachine(maxMessageBytes: 100)
            let last = frames.map { machine.received($0) }.last
            guard case .close(let code, _) = last else {
                Issue.record("not closed: \(frames)")
                continue
            }
            #expect(code == .dataInconsistentWithMessage)
        }
    }

    @Test("a message over the limit closes with 1009, in one frame or once its fragments add up; at the limit it passes")
    func sizeLimit() {
        var machine = WebSocketConnectionMachine(maxMessageBytes: 10)
        #expect(machine.received(clientFrame(.text, String(repeating: "a", count: 10))) == .text(String(repeating: "a", count: 10)))
        #expect(machine.received(clientFrame(.text, "123456", fin: false)) == WebSocketConnectionMachine.Action.none)
        guard case .close(let code, _) = machine.received(clientFrame(.continuation, "12345")) else {
            Issue.record("not closed")
            return
        }
        #expect(code == .messageTooLarge)

        var binary = WebSocketConnectionMachine(maxMessageBytes: 10)
        guard case .close(let binaryCode, _) = binary.received(clientFrame(.binary, Array(repeating: 0, count: 11))) else {
            Issue.record("not closed")
            return
        }
        #expect(binaryCode == .messageTooLarge)
    }

    @Test("a close frame is answered with its code (none: 1000), then nothing more is read or closed")
    func closeHandshake() {
        for (payload, expected) in [
            (closePayload(1000), WebSocketErrorCode.normalClosure), (closePayload(1001, Array("bye".utf8)), .goingAway),
            (closePayload(4001), .unknown(4001)), (closePayload(3000), .unknown(3000)), ([], .normalClosure),
        ] as [([UInt8], WebSocketErrorCode)] {
            var machine = WebSocketConnectionMachine(maxMessageBytes: 100)
            #expect(machine.received(clientFrame(.connectionClose, payload)) == .answerClose(expected))
            #expect(machine.received(clientFrame(.connectionClose, payload)) == WebSocketConnectionMachine.Action.none)
            #expect(machine.close(.goingAway, reason: "shutdown") == nil)
        }
    }

    @Test("a close from the server's side happens once; the client's close after it completes the handshake and is not answered")
    func serverClose() {
        var machine = WebSocketConnectionMachine(maxMessageBytes: 100)
        #expect(machine.received(clientFrame(.text, "a", fin: false)) == WebSocketConnectionMachine.Action.none)
        #expect(machine.close(.policyViolation, reason: "flood") == .close(.policyViolation, reason: "flood"))
        #expect(machine.close(.goingAway, reason: "again") == nil)
        #expect(machine.received(clientFrame(.text, "late")) == WebSocketConnectionMachine.Action.none)
        #expect(machine.received(clientFrame(.connectionClose, closePayload(1000))) == .closeAnswered)
        #expect(machine.received(clientFrame(.connectionClose, closePayload(1000))) == WebSocketConnectionMachine.Action.none)
    }

    @Test("after a protocol error the server waits for the client's close frame too")
    func protocolErrorAwaitsTheClientsClose() {
        var machine = WebSocketConnectionMachine(maxMessageBytes: 100)
        guard case .close(.protocolError, _) = machine.received(clientFrame(.continuation, "x")) else {
            Issue.record("a continuation without a message is a protocol error")
            return
        }
        #expect(machine.received(clientFrame(.connectionClose, closePayload(1002))) == .closeAnswered)
    }
}
