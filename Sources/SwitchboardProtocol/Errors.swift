/// The error codes of the protocol, on HTTP and WebSocket alike.
///
/// Open: a code this library does not know (from a newer server) decodes as itself and
/// encodes back unchanged, so that the request it answers still settles. Compare with the
/// known codes, and keep a `default:` in a `switch`:
///
/// ```swift
/// switch error.code {
/// case .rateLimited: retry(after: error.retryAfterMs)
/// case .forbidden, .notFound: give up
/// default: report(error)
/// }
/// ```
public struct ErrorCode: OpenWireValue, CaseIterable {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    /// The token is missing, unknown, revoked or expired.
    public static let unauthorized: ErrorCode = "unauthorized"
    /// Not a member, or not allowed.
    public static let forbidden: ErrorCode = "forbidden"
    /// No such room, message or user.
    public static let notFound: ErrorCode = "not_found"
    /// Malformed JSON, a missing or wrong field, empty or over-long content.
    public static let invalid: ErrorCode = "invalid"
    /// A body or frame over the size limit.
    public static let tooLarge: ErrorCode = "too_large"
    /// Over a rate limit: `retryAfterMs` says when to try again.
    public static let rateLimited: ErrorCode = "rate_limited"
    /// An envelope type the server does not know.
    public static let unknownType: ErrorCode = "unknown_type"
    /// The name or the thing is taken.
    public static let conflict: ErrorCode = "conflict"
    /// The server failed.
    public static let `internal`: ErrorCode = "internal"

    /// The codes this version of the protocol defines.
    public static let allCases: [ErrorCode] = [
        .unauthorized, .forbidden, .notFound, .invalid, .tooLarge, .rateLimited, .unknownType, .conflict, .internal,
    ]

    /// The HTTP status the contract gives this code; 500 for a code this library does not know.
    public var httpStatus: Int {
        switch self {
        case .invalid, .unknownType: 400
        case .unauthorized: 401
        case .forbidden: 403
        case .notFound: 404
        case .conflict: 409
        case .tooLarge: 413
        case .rateLimited: 429
        default: 500
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
