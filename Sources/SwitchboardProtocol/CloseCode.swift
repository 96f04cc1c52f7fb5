/// The WebSocket close codes the protocol gives a meaning, as named constants, so that neither
/// side writes a bare 4001.
///
/// ```swift
/// if code == CloseCode.unauthorized.rawValue { logInAgain() }
/// ```
public struct CloseCode: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    /// The code as it travels in the close frame.
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// 1000: the session ended normally.
    public static let normal = CloseCode(rawValue: 1000)
    /// 1001: the server is shutting down, or the connection did not answer a ping in time.
    public static let goingAway = CloseCode(rawValue: 1001)
    /// 1002: the peer broke the WebSocket protocol (an unmasked client frame, a bad control frame).
    public static let protocolError = CloseCode(rawValue: 1002)
    /// 1007: a text frame that is not valid UTF-8.
    public static let invalidText = CloseCode(rawValue: 1007)
    /// 1008: a flood far past the rate limit, or more connections of one user than allowed.
    public static let policyViolation = CloseCode(rawValue: 1008)
    /// 1009: a frame over the size limit (64 KiB by default).
    public static let tooLarge = CloseCode(rawValue: 1009)
    /// 4001: the connection's token was revoked or expired; log in again rather than reconnect.
    public static let unauthorized = CloseCode(rawValue: 4001)

    public var description: String { String(rawValue) }
}
