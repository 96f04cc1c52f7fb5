import NIOCore

/// Frames the byte stream into lines at LF (CR LF or a bare LF, as some servers send), decoding
/// UTF-8 and, for the odd legacy client that sends Latin-1, ISO 8859-1 instead of replacement marks.
struct IRCLineDecoder: ByteToMessageDecoder {
    typealias InboundOut = String

    /// IRCv3 allows 8191 bytes of tags in front of the 512-byte line.
    static let maximumLineLength = 8191 + 512

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
            if buffer.readableBytes > Self.maximumLineLength {
                throw IRCConnectionError(code: .lineTooLong, message: "the server sent a line longer than \(Self.maximumLineLength) bytes")
            }
            return .needMoreData
        }
        let length = newline - buffer.readerIndex
        var bytes = buffer.readBytes(length: length + 1)!
        bytes.removeLast()
        if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
        if !bytes.isEmpty {
            context.fireChannelRead(wrapInboundOut(Self.decodeText(bytes)))
        }
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }

    static func decodeText(_ bytes: [UInt8]) -> String {
        if let text = String(validating: bytes, as: UTF8.self) { return text }
        return String(String.UnicodeScalarView(bytes.map { Unicode.Scalar($0) }))
    }
}

/// Why an IRC connection failed or ended.
public struct IRCConnectionError: Error, Sendable, CustomStringConvertible {
    /// The kind of failure.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        let name: String
        public var description: String { name }
        /// The server sent a line beyond any limit.
        public static let lineTooLong = Code(name: "lineTooLong")
        /// The server or the session closed the connection.
        public static let closed = Code(name: "closed")
        /// The TLS settings cannot be used (an unreadable trust root file, …).
        public static let tlsConfiguration = Code(name: "tlsConfiguration")
    }

    /// The kind of failure.
    public var code: Code
    /// What happened, and what to do about it.
    public var message: String
    /// The underlying error, if any.
    public var cause: (any Error)?

    public init(code: Code, message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String { cause.map { "\(message) (\($0))" } ?? message }
}
