/// Cuts a byte stream into lines, with a bound on a line's length.
///
/// A line longer than `maxLineBytes` is not kept in memory: its bytes are dropped up to its end,
/// and it comes out as ``Piece/overlong(bytes:)`` so that the caller can say so.
///
/// ```swift
/// var framer = LineFramer(maxLineBytes: 1 << 20)
/// for piece in framer.append(chunk) { … }
/// if let last = framer.finish() { … }   // at the end of the stream: a last line without "\n"
/// ```
public struct LineFramer: Sendable {
    /// One result of cutting.
    public enum Piece: Sendable, Hashable {
        /// A whole line without its `\n` (nor a `\r` before it).
        case line([UInt8])
        /// A line of `bytes` bytes, over the bound, dropped.
        case overlong(bytes: Int)
    }

    /// The longest line kept, in bytes.
    public let maxLineBytes: Int
    private var buffer: [UInt8] = []
    private var droppedBytes: Int?

    /// A framer for lines of at most `maxLineBytes` bytes.
    public init(maxLineBytes: Int) {
        self.maxLineBytes = maxLineBytes
    }

    /// Adds bytes; returns the lines they completed.
    public mutating func append(_ bytes: some Sequence<UInt8>) -> [Piece] {
        var pieces: [Piece] = []
        for byte in bytes {
            if byte == UInt8(ascii: "\n") {
                pieces.append(endLine())
            } else if let dropped = droppedBytes {
                droppedBytes = dropped + 1
            } else if buffer.count == maxLineBytes {
                droppedBytes = buffer.count + 1
                buffer.removeAll(keepingCapacity: false)
            } else {
                buffer.append(byte)
            }
        }
        return pieces
    }

    /// The end of the stream: the last line, if it had no `\n`.
    public mutating func finish() -> Piece? {
        guard !buffer.isEmpty || droppedBytes != nil else { return nil }
        return endLine()
    }

    private mutating func endLine() -> Piece {
        defer {
            buffer.removeAll(keepingCapacity: true)
            droppedBytes = nil
        }
        if let dropped = droppedBytes { return .overlong(bytes: dropped) }
        if buffer.last == UInt8(ascii: "\r") { buffer.removeLast() }
        return .line(buffer)
    }
}
