import NIOCore
import SwitchboardProtocol

/// One envelope for clients, encoded once and shared by every recipient: the complete WebSocket
/// frame for sockets, and its JSON for long polls.
///
/// Server frames are never masked, so the frame's bytes are the same for every socket: building
/// them once spares each delivery a header allocation and a walk through the frame encoder.
struct OutgoingFrame: Sendable {
    /// A final, unmasked text frame: header then JSON, written to sockets as it is.
    let wire: ByteBuffer
    /// Bytes of the header at the start of `wire`.
    private let headerLength: Int

    /// The envelope's JSON (shares the storage of `wire`).
    var json: ByteBuffer {
        wire.getSlice(at: wire.readerIndex + headerLength, length: wire.readableBytes - headerLength) ?? ByteBuffer()
    }

    /// Frames JSON that `JSONWriter` wrote after its reserved header space.
    init(written buffer: ByteBuffer) {
        var buffer = buffer
        let length = buffer.writerIndex - JSONWriter.reservedHeaderBytes
        if length < 126 {
            buffer.setInteger(UInt8(0x81), at: 2)
            buffer.setInteger(UInt8(length), at: 3)
            buffer.moveReaderIndex(to: 2)
            self.headerLength = 2
        } else if length <= Int(UInt16.max) {
            buffer.setInteger(UInt8(0x81), at: 0)
            buffer.setInteger(UInt8(126), at: 1)
            buffer.setInteger(UInt16(length), at: 2)
            self.headerLength = 4
        } else {
            // Too long for the reserved space: copy behind a 10-byte header (rare: replay-sized frames only).
            var framed = ByteBuffer()
            framed.reserveCapacity(10 + length)
            framed.writeInteger(UInt8(0x81))
            framed.writeInteger(UInt8(127))
            framed.writeInteger(UInt64(length))
            framed.writeImmutableBuffer(buffer.getSlice(at: JSONWriter.reservedHeaderBytes, length: length)!)
            buffer = framed
            self.headerLength = 10
        }
        self.wire = buffer
    }

    /// Frames JSON bytes.
    init(json bytes: [UInt8]) {
        var writer = JSONWriter(capacity: bytes.count)
        writer.buffer.writeBytes(bytes)
        self.init(written: writer.buffer)
    }
}

/// Writes JSON straight into a buffer, leaving room in front for the WebSocket header.
///
/// For the envelopes sent for every message (the `message` event and its `ack`), where
/// `JSONEncoder` costs about 10 µs and 28 allocations each. Output is the same JSON as
/// `Wire.encode` gives (key order aside, which JSON leaves free).
struct JSONWriter {
    /// Enough for the header of a frame up to 65,535 bytes.
    static let reservedHeaderBytes = 4

    var buffer: ByteBuffer

    init(capacity: Int) {
        buffer = ByteBuffer()
        buffer.reserveCapacity(Self.reservedHeaderBytes + capacity)
        buffer.writeInteger(UInt32(0))
    }

    /// Bytes that need no escaping, such as keys and punctuation.
    mutating func raw(_ text: StaticString) {
        buffer.writeStaticString(text)
    }

    mutating func integer(_ value: Int) {
        buffer.writeString(String(value))
    }

    mutating func bool(_ value: Bool) {
        buffer.writeStaticString(value ? "true" : "false")
    }

    mutating func null() {
        buffer.writeStaticString("null")
    }

    /// A JSON string: quotes, backslashes and control characters escaped, the rest as UTF-8
    /// (slashes are not escaped, as with `.withoutEscapingSlashes`).
    mutating func string(_ value: String) {
        var value = value
        value.withUTF8 { bytes in
            buffer.writeInteger(UInt8(ascii: "\""))
            var start = 0
            for index in 0..<bytes.count {
                let byte = bytes[index]
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
                buffer.writeBytes(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(bytes)[start..<index]))
                start = index + 1
                switch byte {
                case UInt8(ascii: "\""): buffer.writeStaticString("\\\"")
                case UInt8(ascii: "\\"): buffer.writeStaticString("\\\\")
                case 0x0A: buffer.writeStaticString("\\n")
                case 0x0D: buffer.writeStaticString("\\r")
                case 0x09: buffer.writeStaticString("\\t")
                case 0x08: buffer.writeStaticString("\\b")
                case 0x0C: buffer.writeStaticString("\\f")
                default:
                    let hex: [UInt8] = Array("0123456789abcdef".utf8)
                    buffer.writeStaticString("\\u00")
                    buffer.writeInteger(hex[Int(byte >> 4)])
                    buffer.writeInteger(hex[Int(byte & 0x0F)])
                }
            }
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(bytes)[start..<bytes.count]))
            buffer.writeInteger(UInt8(ascii: "\""))
        }
    }

    mutating func optionalString(_ value: String?) {
        if let value { string(value) } else { null() }
    }

    mutating func optionalInteger(_ value: Int?) {
        if let value { integer(value) } else { null() }
    }

    /// Any other value, through `JSONEncoder` (for `meta`, which is rare and arbitrary).
    mutating func encoded(_ value: some Encodable) {
        buffer.writeBytes(Self.encodeOrFail(value))
    }

    /// A `Message` with every field of the contract, absent ones as `null` (as `Message.encode(to:)`).
    mutating func message(_ message: Message) {
        raw("{\"id\":")
        string(message.id)
        raw(",\"roomId\":")
        string(message.roomId)
        raw(",\"seq\":")
        integer(message.seq)
        raw(",\"userId\":")
        string(message.userId)
        raw(",\"content\":")
        string(message.content)
        raw(",\"createdAt\":")
        integer(message.createdAt)
        raw(",\"clientId\":")
        optionalString(message.clientId)
        raw(",\"replyTo\":")
        optionalString(message.replyTo)
        raw(",\"meta\":")
        if let meta = message.meta { encoded(meta) } else { null() }
        raw(",\"editedAt\":")
        optionalInteger(message.editedAt)
        raw(",\"deleted\":")
        bool(message.deleted)
        raw(",\"reactions\":{")
        var first = true
        for (reaction, count) in message.reactions {
            if !first { raw(",") }
            first = false
            string(reaction)
            raw(":")
            integer(count)
        }
        raw("}}")
    }

    static func encodeOrFail(_ value: some Encodable) -> [UInt8] {
        do {
            return try Wire.encode(value)
        } catch {
            // Our own types always encode; reaching this is a bug, not bad input.
            preconditionFailure("cannot encode \(type(of: value)): \(error)")
        }
    }
}

extension OutgoingFrame {
    /// The `message` event of a stored message: `{type, roomId, data, timestamp, userId}`.
    static func messageEvent(_ message: Message, messageJSON: ByteBuffer, now: Int) -> OutgoingFrame {
        var writer = JSONWriter(capacity: messageJSON.readableBytes + 96 + message.roomId.utf8.count + message.userId.utf8.count)
        writer.raw("{\"type\":\"message\",\"roomId\":")
        writer.string(message.roomId)
        writer.raw(",\"data\":")
        writer.buffer.writeImmutableBuffer(messageJSON)
        writer.raw(",\"timestamp\":")
        writer.integer(now)
        writer.raw(",\"userId\":")
        writer.string(message.userId)
        writer.raw("}")
        return OutgoingFrame(written: writer.buffer)
    }

    /// The `ack` of a `message` request: `{type, roomId, data: {message, duplicate}, timestamp, ref}`.
    static func messageAck(_ message: Message, messageJSON: ByteBuffer, duplicate: Bool, ref: String?, now: Int) -> OutgoingFrame {
        var writer = JSONWriter(capacity: messageJSON.readableBytes + 96 + message.roomId.utf8.count + (ref?.utf8.count ?? 0))
        writer.raw("{\"type\":\"ack\",\"roomId\":")
        writer.string(message.roomId)
        writer.raw(",\"data\":{\"message\":")
        writer.buffer.writeImmutableBuffer(messageJSON)
        writer.raw(",\"duplicate\":")
        writer.bool(duplicate)
        writer.raw("},\"timestamp\":")
        writer.integer(now)
        if let ref {
            writer.raw(",\"ref\":")
            writer.string(ref)
        }
        writer.raw("}")
        return OutgoingFrame(written: writer.buffer)
    }

    /// A message's JSON, to be shared by its event and its ack.
    static func messageJSON(_ message: Message) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(message.content.utf8.count + 220)
        var writer = JSONWriter(buffer: buffer)
        writer.message(message)
        return writer.buffer
    }
}

extension JSONWriter {
    /// Writes into `buffer` with no header space: for pieces spliced into frames.
    fileprivate init(buffer: ByteBuffer) {
        self.buffer = buffer
    }
}

/// Encodes an outgoing envelope once, into a frame every recipient shares.
func encode<Payload>(_ envelope: Envelope<Payload>) -> OutgoingFrame {
    OutgoingFrame(json: JSONWriter.encodeOrFail(envelope))
}
