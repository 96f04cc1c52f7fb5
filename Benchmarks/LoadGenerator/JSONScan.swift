#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif
import NIOCore

/// A byte range inside one frame.
struct Span: Equatable {
    var start: Int
    var end: Int
    var count: Int { end - start }
}

/// The few fields of a server envelope the generator reads, found without decoding the frame.
///
/// The generator reads tens of thousands of frames a second on the same cores as the server, so
/// it does not decode JSON: it walks the bytes once, notes where the values it needs are, and
/// reads numbers straight from them. It copes with any key order and white space, so it reads
/// the frames of any server that speaks the protocol.
struct EnvelopeFields {
    var type: Span?
    var ref: Span?
    var roomId: Span?
    var data: Span?
}

/// Fields of an envelope's `data` object that some scenario needs.
struct DataFields {
    var content: Span?
    var code: Span?
    var seq: Span?
    var lastSeq: Span?
    var replayed: Span?
    var truncated: Span?
    var retryAfterMs: Span?
    var message: Span?
}

enum JSONScan {
    /// The top-level fields of one envelope; nil when the bytes are not a JSON object.
    static func envelope(_ bytes: UnsafeRawBufferPointer) -> EnvelopeFields? {
        var fields = EnvelopeFields()
        let ok = scanObject(bytes, from: 0, to: bytes.count) { key, value in
            switch key.count {
            case 4:
                if equals(bytes, key, "type") { fields.type = value } else if equals(bytes, key, "data") { fields.data = value }
            case 3:
                if equals(bytes, key, "ref") { fields.ref = value }
            case 6:
                if equals(bytes, key, "roomId") { fields.roomId = value }
            default:
                break
            }
        }
        return ok ? fields : nil
    }

    /// The fields of a `data` object (or of any object span).
    static func data(_ bytes: UnsafeRawBufferPointer, _ span: Span) -> DataFields {
        var fields = DataFields()
        _ = scanObject(bytes, from: span.start, to: span.end) { key, value in
            switch key.count {
            case 3: if equals(bytes, key, "seq") { fields.seq = value }
            case 4: if equals(bytes, key, "code") { fields.code = value }
            case 7:
                if equals(bytes, key, "content") { fields.content = value } else if equals(bytes, key, "lastSeq") { fields.lastSeq = value } else if equals(bytes, key, "message") { fields.message = value }
            case 8: if equals(bytes, key, "replayed") { fields.replayed = value }
            case 9: if equals(bytes, key, "truncated") { fields.truncated = value }
            case 12: if equals(bytes, key, "retryAfterMs") { fields.retryAfterMs = value }
            default: break
            }
        }
        return fields
    }

    /// Calls `visit` with the span of each key (without quotes) and value (strings with their quotes)
    /// of the object starting at `from`. False when the bytes are not an object.
    @discardableResult
    static func scanObject(_ p: UnsafeRawBufferPointer, from: Int, to end: Int, _ visit: (Span, Span) -> Void) -> Bool {
        var i = skipSpace(p, from, end)
        guard i < end, p[i] == UInt8(ascii: "{") else { return false }
        i = skipSpace(p, i + 1, end)
        if i < end, p[i] == UInt8(ascii: "}") { return true }
        while i < end {
            guard p[i] == UInt8(ascii: "\"") else { return false }
            guard let keyEnd = skipString(p, i, end) else { return false }
            let key = Span(start: i + 1, end: keyEnd - 1)
            i = skipSpace(p, keyEnd, end)
            guard i < end, p[i] == UInt8(ascii: ":") else { return false }
            i = skipSpace(p, i + 1, end)
            guard let valueEnd = skipValue(p, i, end) else { return false }
            visit(key, Span(start: i, end: valueEnd))
            i = skipSpace(p, valueEnd, end)
            guard i < end else { return false }
            if p[i] == UInt8(ascii: ",") {
                i = skipSpace(p, i + 1, end)
                continue
            }
            return p[i] == UInt8(ascii: "}")
        }
        return false
    }

    @inline(__always)
    static func skipSpace(_ p: UnsafeRawBufferPointer, _ from: Int, _ end: Int) -> Int {
        var i = from
        while i < end {
            switch p[i] {
            case 0x20, 0x09, 0x0A, 0x0D: i += 1
            default: return i
            }
        }
        return i
    }

    /// The index just after the closing quote of the string starting at `from`.
    ///
    /// Finds quotes with `memchr` (most of a frame's bytes are in strings: ids and content), then
    /// takes a quote for the end when an even number of backslashes comes before it.
    @inline(__always)
    static func skipString(_ p: UnsafeRawBufferPointer, _ from: Int, _ end: Int) -> Int? {
        guard let base = p.baseAddress else { return nil }
        var i = from + 1
        while i < end, let found = memchr(base + i, 0x22, end - i) {
            let quote = base.distance(to: UnsafeRawPointer(found))
            var backslash = quote - 1
            while backslash > from, p[backslash] == UInt8(ascii: "\\") { backslash -= 1 }
            if (quote - 1 - backslash) % 2 == 0 { return quote + 1 }
            i = quote + 1
        }
        return nil
    }

    /// The index just after the value starting at `from`.
    static func skipValue(_ p: UnsafeRawBufferPointer, _ from: Int, _ end: Int) -> Int? {
        guard from < end else { return nil }
        switch p[from] {
        case UInt8(ascii: "\""):
            return skipString(p, from, end)
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            var depth = 0
            var i = from
            while i < end {
                switch p[i] {
                case UInt8(ascii: "\""):
                    guard let next = skipString(p, i, end) else { return nil }
                    i = next
                    continue
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0 { return i + 1 }
                default:
                    break
                }
                i += 1
            }
            return nil
        default:
            var i = from
            while i < end {
                switch p[i] {
                case UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), 0x20, 0x09, 0x0A, 0x0D: return i
                default: i += 1
                }
            }
            return i
        }
    }

    /// Whether the bytes of `span` are `literal`.
    @inline(__always)
    static func equals(_ p: UnsafeRawBufferPointer, _ span: Span, _ literal: StaticString) -> Bool {
        guard span.count == literal.utf8CodeUnitCount else { return false }
        let start = literal.utf8Start
        for offset in 0..<span.count where p[span.start + offset] != start[offset] {
            return false
        }
        return true
    }

    /// Whether a string value (with its quotes) is `literal`.
    @inline(__always)
    static func stringEquals(_ p: UnsafeRawBufferPointer, _ span: Span?, _ literal: StaticString) -> Bool {
        guard let span, span.count >= 2, p[span.start] == UInt8(ascii: "\"") else { return false }
        return equals(p, Span(start: span.start + 1, end: span.end - 1), literal)
    }

    /// A non-negative integer value, or a string value made of digits; nil otherwise.
    static func integer(_ p: UnsafeRawBufferPointer, _ span: Span?) -> Int? {
        guard var span else { return nil }
        if span.count >= 2, p[span.start] == UInt8(ascii: "\"") {
            span = Span(start: span.start + 1, end: span.end - 1)
        }
        guard span.count > 0, span.count <= 18 else { return nil }
        var value = 0
        for i in span.start..<span.end {
            let digit = Int(p[i]) - 48
            guard digit >= 0, digit <= 9 else { return i > span.start && (p[i] == UInt8(ascii: ".") || p[i] == UInt8(ascii: "e")) ? value : nil }
            value = value * 10 + digit
        }
        return value
    }

    /// Whether a value is the literal `true`.
    static func isTrue(_ p: UnsafeRawBufferPointer, _ span: Span?) -> Bool {
        guard let span else { return false }
        return equals(p, span, "true")
    }

    /// A string value's text, without quotes or unescaping (for error codes and diagnostics).
    static func string(_ p: UnsafeRawBufferPointer, _ span: Span?) -> String? {
        guard let span, span.count >= 2, p[span.start] == UInt8(ascii: "\"") else { return nil }
        return String(decoding: UnsafeRawBufferPointer(rebasing: p[(span.start + 1)..<(span.end - 1)]), as: UTF8.self)
    }
}

/// Writes decimal integers into a buffer without going through `String`.
extension ByteBuffer {
    @inline(__always)
    mutating func writeDecimal(_ value: UInt64) {
        var count = 1
        var rest = value / 10
        while rest > 0 {
            count += 1
            rest /= 10
        }
        let start = writerIndex
        writeRepeatingByte(48, count: count)
        var v = value
        var index = start + count - 1
        while index >= start {
            setInteger(UInt8(48 + v % 10), at: index)
            v /= 10
            index -= 1
        }
    }

    @inline(__always)
    mutating func writeDecimal(_ value: Int) {
        writeDecimal(UInt64(max(0, value)))
    }
}
