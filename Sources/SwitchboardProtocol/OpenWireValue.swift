/// A string value of the protocol that newer versions may extend: an envelope type, an error
/// code, a room kind, a presence status, a reaction action.
///
/// A closed `enum` would make a client's decode throw on a value a newer server added, and the
/// request that value answered would never settle. An open value decodes any string, keeps it,
/// and encodes it back unchanged; the values this library knows are `static let`s, so code reads
/// the same as with an enum, but a `switch` needs a `default:`.
///
/// ```swift
/// let status = try Wire.decode(PresenceStatus.self, from: Array(#""away""#.utf8))
/// status == .online  // false
/// status.rawValue    // "away"
/// ```
public protocol OpenWireValue: RawRepresentable, Codable, Hashable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible
where RawValue == String {
    /// Any value, known or not.
    init(rawValue: String)
}

extension OpenWireValue {
    /// A known value, written as its wire string.
    public init(stringLiteral value: String) { self.init(rawValue: value) }

    /// Decodes any string.
    public init(from decoder: any Decoder) throws {
        self.init(rawValue: try decoder.singleValueContainer().decode(String.self))
    }

    /// Encodes the wire string, unknown values included.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    /// The wire string.
    public var description: String { rawValue }
}
