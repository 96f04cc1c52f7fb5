import SwitchboardProtocol

/// Why an operation of ``ChatClient`` failed, or why the client stopped for good.
///
/// Every error has a ``code`` to switch on, a ``message`` for people and, when it came from
/// something underneath (the server, the network, the file system), that ``cause``.
///
/// ```swift
/// do {
///     try await client.send("hello", to: roomId)
/// } catch let error as ClientError where error.code == .forbidden {
///     print("not a member of that room: \(error.message)")
/// }
/// ```
public struct ClientError: Error, Sendable, CustomStringConvertible, Equatable {
    /// What went wrong, as a program reads it.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case unauthorized, forbidden, notFound, invalid, conflict, rateLimited, server
            case unreachable, connectionLost, timeout, notConnected, unavailable
            case outboxFull, shutdown, badResponse, storage, refused
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The token is missing, unknown, expired or revoked, or the password is wrong. Final: the client stops.
        public static let unauthorized = Code(.unauthorized)
        /// The server refused: not a member, or not allowed.
        public static let forbidden = Code(.forbidden)
        /// The room, message or user does not exist.
        public static let notFound = Code(.notFound)
        /// The server found the request malformed or too large: empty or over-long content, a bad field.
        public static let invalid = Code(.invalid)
        /// The name is taken (registering an account that exists).
        public static let conflict = Code(.conflict)
        /// Too many requests; the client waits and retries sends by itself, so callers rarely see this.
        public static let rateLimited = Code(.rateLimited)
        /// The server failed (`internal`, an unexpected status).
        public static let server = Code(.server)
        /// The server could not be reached at all.
        public static let unreachable = Code(.unreachable)
        /// The connection ended before the request was answered.
        public static let connectionLost = Code(.connectionLost)
        /// No answer in time.
        public static let timeout = Code(.timeout)
        /// The operation needs a live connection and there is none right now.
        public static let notConnected = Code(.notConnected)
        /// The operation needs the WebSocket, and the client is long-polling (reactions).
        public static let unavailable = Code(.unavailable)
        /// The outbox holds as many messages as it may; nothing was queued.
        public static let outboxFull = Code(.outboxFull)
        /// The client was disconnected, or is disconnecting.
        public static let shutdown = Code(.shutdown)
        /// The server's answer could not be understood.
        public static let badResponse = Code(.badResponse)
        /// The outbox file, or the position store, could not be read or written.
        public static let storage = Code(.storage)
        /// The server refused with an error code this library does not know (a newer server's): final for that request.
        public static let refused = Code(.refused)

        /// The code's name, such as `unauthorized`.
        public var description: String { base.rawValue }
    }

    /// What went wrong, as a program reads it.
    public var code: Code
    /// What went wrong, as a person reads it.
    public var message: String
    /// The error underneath, when there is one: a ``SwitchboardProtocol/ProtocolError`` from the
    /// server, a network error, a decoding error.
    public var cause: (any Error)?

    /// Makes an error.
    public init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    /// The server's own error, when the server answered with one.
    public var protocolError: ProtocolError? { cause as? ProtocolError }

    /// Whether the same request may succeed later without being changed.
    ///
    /// Used by the outbox: a message refused as `invalid` or `forbidden` is dropped (and reported),
    /// one that met a failing server or a lost connection is kept and sent again.
    public var isTransient: Bool {
        switch code {
        case .rateLimited, .server, .unreachable, .connectionLost, .timeout, .notConnected: true
        default: false
        }
    }

    /// `code: message`, with the cause when it is not the server's error.
    public var description: String {
        if let cause, !(cause is ProtocolError) { return "\(code): \(message) (\(cause))" }
        return "\(code): \(message)"
    }

    /// Two errors are equal when their codes and messages are; causes are not compared.
    public static func == (lhs: ClientError, rhs: ClientError) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message
    }

    /// The client error for an error the server answered with.
    init(_ error: ProtocolError) {
        let code: Code =
            switch error.code {
            case .unauthorized: .unauthorized
            case .forbidden: .forbidden
            case .notFound: .notFound
            case .invalid, .unknownType, .tooLarge: .invalid
            case .conflict: .conflict
            case .rateLimited: .rateLimited
            case .internal: .server
            default: .refused
            }
        // The raw code of an unknown refusal is the only hint of what went wrong: keep it in sight.
        let message = code == .refused ? "the server refused (\(error.code)): \(error.message)" : error.message
        self.init(code, message, cause: error)
    }
}
