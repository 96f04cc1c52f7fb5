import NIOCore
import NIOWebSocket

/// The rules of RFC 6455 for one server-side WebSocket, frame by frame: client frames must be
/// masked and use no reserved bits or opcodes; text messages are assembled from their fragments,
/// checked as UTF-8 and capped in size; pings get pongs; a close frame is answered and ends the
/// connection; a close from the server waits for the client's answer.
///
/// Pure: it takes decoded frames and returns what to do, so that every rule is tested without a
/// socket. `SocketChannelHandler` does the I/O.
///
/// ```swift
/// var machine = WebSocketConnectionMachine(maxMessageBytes: 64 * 1024)
/// switch machine.received(frame) {
/// case .text(let text): answer(text)
/// case .close(let code, let reason): sendCloseAndEnd(code, reason)
/// default: break
/// }
/// ```
struct WebSocketConnectionMachine {
    /// What the connection must do after a frame.
    enum Action: Equatable {
        /// Nothing yet (a fragment of a message, or a frame after the close).
        case none
        /// A complete text message.
        case text(String)
        /// A complete binary message, which the protocol refuses.
        case binary
        /// Answers a ping with a pong carrying the same bytes.
        case pong(ByteBuffer)
        /// The client answered a ping.
        case pongReceived
        /// Sends a close frame with this code, then waits for the client's close frame (or the end
        /// of its connection) before ending the TCP connection.
        case close(WebSocketErrorCode, reason: String)
        /// Answers the client's close frame with this code, then ends the TCP connection: the
        /// closing handshake is complete.
        case answerClose(WebSocketErrorCode)
        /// The client's close frame, after the server's: the handshake is complete.
        case closeAnswered
    }

    /// The message being assembled from fragments.
    private struct Assembly {
        var isText: Bool
        var bytes = ByteBuffer()
        var size = 0
        var validator = UTF8Validator()
    }

    /// Longest message accepted, all fragments together; past it the connection closes with 1009.
    let maxMessageBytes: Int
    private var assembly: Assembly?
    /// Whether a close frame was sent or received: nothing is read after it.
    private(set) var isClosed = false
    /// Whether the server's close frame waits for the client's.
    private var awaitsClientClose = false

    init(maxMessageBytes: Int) {
        self.maxMessageBytes = maxMessageBytes
    }

    /// Takes one frame from the client.
    mutating func received(_ frame: WebSocketFrame) -> Action {
        guard !isClosed else {
            guard awaitsClientClose, frame.opcode == .connectionClose else { return .none }
            awaitsClientClose = false
            return .closeAnswered
        }
        guard frame.maskKey != nil else { return close(.protocolError, "client frames must be masked") }
        guard !frame.rsv1, !frame.rsv2, !frame.rsv3 else { return close(.protocolError, "reserved bits are set and no extension was agreed") }
        switch frame.opcode {
        case .ping, .pong, .connectionClose:
            // The frame decoder refuses these already; checked again so that the rule holds here.
            guard frame.fin, frame.length <= 125 else {
                return close(.protocolError, "a control frame must be final and at most 125 bytes")
            }
            switch frame.opcode {
            case .ping: return .pong(frame.unmaskedData)
            case .pong: return .pongReceived
            default: return receivedClose(frame.unmaskedData)
            }
        case .text, .binary:
            guard assembly == nil else { return close(.protocolError, "a new message started inside a fragmented one") }
            guard !frame.fin else { return receivedMessage(frame) }
            assembly = Assembly(isText: frame.opcode == .text)
            return receivedData(frame)
        case .continuation:
            guard assembly != nil else { return close(.protocolError, "a continuation frame without a message to continue") }
            return receivedData(frame)
        default:
            return close(.protocolError, "opcode \(frame.opcode) is reserved")
        }
    }

    /// Closes from this side (a session rule, shutdown, a revoked token). Nil when the connection
    /// is closing already.
    mutating func close(_ code: WebSocketErrorCode, reason: String) -> Action? {
        guard !isClosed else { return nil }
        return close(code, reason)
    }

    private mutating func close(_ code: WebSocketErrorCode, _ reason: String) -> Action {
        isClosed = true
        awaitsClientClose = true
        assembly = nil
        return .close(code, reason: reason)
    }

    /// An unfragmented message, the usual case: nothing to assemble, and the standard library's
    /// UTF-8 check, which is faster than the fragment by fragment one.
    private mutating func receivedMessage(_ frame: WebSocketFrame) -> Action {
        guard frame.length <= maxMessageBytes else { return tooLarge() }
        guard frame.opcode == .text else { return .binary }
        guard let text = String(validating: frame.unmaskedData.readableBytesView, as: UTF8.self) else {
            return close(.dataInconsistentWithMessage, "a text frame is not valid UTF-8")
        }
        return .text(text)
    }

    /// A fragment of a message.
    private mutating func receivedData(_ frame: WebSocketFrame) -> Action {
        guard var message = assembly else { return .none }
        assembly = nil  // Unique while appended to: no copy of the bytes.
        message.size += frame.length
        guard message.size <= maxMessageBytes else { return tooLarge() }
        guard message.isText else {
            // Binary messages are refused whole, once: only their size is kept.
            guard frame.fin else {
                assembly = message
                return .none
            }
            return .binary
        }
        let data = frame.unmaskedData
        guard message.validator.consume(data), !frame.fin || message.validator.isComplete else {
            return close(.dataInconsistentWithMessage, "a text frame is not valid UTF-8")
        }
        message.bytes.writeImmutableBuffer(data)
        guard frame.fin else {
            assembly = message
            return .none
        }
        return .text(String(buffer: message.bytes))
    }

    private mutating func tooLarge() -> Action {
        close(.messageTooLarge, "a message is larger than \(maxMessageBytes) bytes")
    }

    /// A close frame from the client: answered with its code (RFC 6455 §5.5.1), or with 1002 or
    /// 1007 when the frame itself is wrong.
    private mutating func receivedClose(_ payload: ByteBuffer) -> Action {
        var payload = payload
        guard payload.readableBytes > 0 else { return answerClose(.normalClosure) }
        guard let code = payload.readInteger(as: UInt16.self) else {
            return close(.protocolError, "a close frame's code must be two bytes")
        }
        guard Self.isValidCloseCode(code) else { return close(.protocolError, "close code \(code) is not allowed") }
        var validator = UTF8Validator()
        guard validator.consume(payload), validator.isComplete else {
            return close(.dataInconsistentWithMessage, "a close reason is not valid UTF-8")
        }
        return answerClose(WebSocketErrorCode(codeNumber: Int(code)))
    }

    private mutating func answerClose(_ code: WebSocketErrorCode) -> Action {
        isClosed = true
        assembly = nil
        return .answerClose(code)
    }

    /// Codes a peer may send (RFC 6455 §7.4 and the IANA registry): not 1004–1006, 1015, nor
    /// unassigned ones below 3000.
    static func isValidCloseCode(_ code: UInt16) -> Bool {
        switch code {
        case 1000...1003, 1007...1014, 3000...4999: return true
        default: return false
        }
    }
}

/// A UTF-8 check that takes a text message fragment by fragment (RFC 3629: no overlong forms,
/// no surrogates, nothing above U+10FFFF), so that a character split between fragments passes.
struct UTF8Validator {
    /// Continuation bytes still expected, and the range the next one must fall in.
    private var remaining = 0
    private var lower: UInt8 = 0x80
    private var upper: UInt8 = 0xBF

    /// Whether no character is left unfinished.
    var isComplete: Bool { remaining == 0 }

    /// Checks the (unmasked) bytes of one frame.
    mutating func consume(_ buffer: ByteBuffer) -> Bool {
        buffer.withUnsafeReadableBytes { bytes in
            for byte in bytes where !consume(byte) { return false }
            return true
        }
    }

    mutating func consume(_ byte: UInt8) -> Bool {
        if remaining == 0 {
            switch byte {
            case 0x00...0x7F: return true
            case 0xC2...0xDF: remaining = 1
            case 0xE0: (remaining, lower) = (2, 0xA0)
            case 0xE1...0xEC, 0xEE...0xEF: remaining = 2
            case 0xED: (remaining, upper) = (2, 0x9F)
            case 0xF0: (remaining, lower) = (3, 0x90)
            case 0xF1...0xF3: remaining = 3
            case 0xF4: (remaining, upper) = (3, 0x8F)
            default: return false
            }
            return true
        }
        guard byte >= lower, byte <= upper else { return false }
        (remaining, lower, upper) = (remaining - 1, 0x80, 0xBF)
        return true
    }
}
