/// The error codes of the protocol, on HTTP and WebSocket alike.
public enum ErrorCode: String, Codable, Sendable, Hashable, CaseIterable {
    case unauthorized
    case forbidden
    case notFound = "not_found"
    case invalid
    case tooLarge = "too_large"
    case rateLimited = "rate_limited"
    case unknownType = "unknown_type"
    case conflict
    case `internal`

    /// The HTTP status the contract gives this code.
    public var httpStatus: Int {
        switch self {
        case .invalid, .unknownType: 400
        case .unauthorized: 401
        case .forbidden: 403
        case .notFound: 404
        case .conflict: 409
        case .tooLarge: 413
        case .rateLimited: 429
        case .internal: 500
        }
    }
}

/// An error the protocol can carry: a code, a message for people, and for `rate_limited` when to try again.
///
/// ```swift
/// throw ProtocolError(.invalid, "content must be 1 to 4000 characters")
/// ```
public struct ProtocolError: Error, Codable, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong, as a machine reads it.
    public var code: ErrorCode
    /// What went wrong, as a person reads it.
    public var message: String
    /// With `rate_limited`: how long to wait before trying again.
    public var retryAfterMs: Int?

    public init(_ code: ErrorCode, _ message: String, retryAfterMs: Int? = nil) {
        self.code = code
        self.message = message
        self.retryAfterMs = retryAfterMs
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

/// The body of every HTTP error answer: `{"error": {"code", "message"}}`.
public struct ErrorResponse: Codable, Sendable, Hashable {
    public var error: ProtocolError
    public init(error: ProtocolError) { self.error = error }
}
