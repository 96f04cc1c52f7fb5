/// The limits the protocol puts on what clients send; every one is configurable on the server.
///
/// The defaults are those of the protocol contract. Clients may use the same checks to refuse
/// bad input before it reaches the network.
public struct Limits: Sendable, Hashable, Codable {
    /// Most Unicode scalars in a message's content after trimming.
    public var maxContentLength: Int = 4000
    /// Most UTF-8 bytes in a reaction.
    public var maxReactionBytes: Int = 32
    /// Most characters in a room name.
    public var maxNameLength: Int = 100
    /// Most characters in a `clientId`.
    public var maxClientIdLength: Int = 64
    /// Most bytes of a message's `meta`, encoded as JSON.
    public var maxMetaBytes: Int = 1024
    /// Largest WebSocket frame the server reads; a larger one closes the connection with 1009.
    public var maxFrameBytes: Int = 64 * 1024
    /// Most messages replayed by a `join` with `since`; past it the client pages over HTTP.
    public var replayCap: Int = 1000

    public init() {}
}

/// Checks of the contract's rules that need no server state.
public enum Validation {
    /// Trims white space at both ends and checks the length, counted in Unicode scalars.
    /// - Returns: the text to store.
    public static func content(_ raw: String, limits: Limits = Limits()) throws(ProtocolError) -> String {
        if let control = raw.unicodeScalars.first(where: isForbiddenInContent) {
            throw ProtocolError(
                .invalid, "content must not contain the control character \(describe(control)); send a new line as \\n, never \\r")
        }
        let trimmed = trimmed(raw)
        let count = trimmed.unicodeScalars.count
        guard count >= 1 else { throw ProtocolError(.invalid, "content must not be empty") }
        guard count <= limits.maxContentLength else {
            throw ProtocolError(.invalid, "content must be at most \(limits.maxContentLength) characters (it has \(count))")
        }
        return trimmed
    }

    /// A room name: 1 to `maxNameLength` characters after trimming.
    public static func roomName(_ raw: String, limits: Limits = Limits()) throws(ProtocolError) -> String {
        try checkName(raw, field: "name")
        let name = trimmed(raw)
        guard !name.isEmpty, name.count <= limits.maxNameLength else {
            throw ProtocolError(.invalid, "name must be 1 to \(limits.maxNameLength) characters")
        }
        return name
    }

    /// A username: 1 to 32 of `A–Z a–z 0–9 . _ -`.
    public static func username(_ name: String) throws(ProtocolError) {
        let allowed = name.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == 0x2E || byte == 0x5F || byte == 0x2D
        }
        guard allowed, (1...32).contains(name.utf8.count) else {
            throw ProtocolError(.invalid, "username must be 1 to 32 characters of A-Z a-z 0-9 . _ -")
        }
    }

    /// A password: 8 to 128 characters.
    public static func password(_ password: String) throws(ProtocolError) {
        guard (8...128).contains(password.count) else {
            throw ProtocolError(.invalid, "password must be 8 to 128 characters")
        }
    }

    /// A display name: 1 to `maxNameLength` characters after trimming.
    public static func displayName(_ raw: String, limits: Limits = Limits()) throws(ProtocolError) -> String {
        try checkName(raw, field: "displayName")
        let name = trimmed(raw)
        guard !name.isEmpty, name.count <= limits.maxNameLength else {
            throw ProtocolError(.invalid, "displayName must be 1 to \(limits.maxNameLength) characters")
        }
        return name
    }

    /// A reaction: 1 to `maxReactionBytes` bytes of UTF-8.
    public static func reaction(_ reaction: String, limits: Limits = Limits()) throws(ProtocolError) {
        guard (1...limits.maxReactionBytes).contains(reaction.utf8.count), !reaction.unicodeScalars.contains("\u{0}") else {
            throw ProtocolError(.invalid, "reaction must be 1 to \(limits.maxReactionBytes) bytes")
        }
    }

    /// A `clientId`: 1 to `maxClientIdLength` characters, without U+0000 (which PostgreSQL cannot
    /// store: in a group commit, one such key would fail the other senders' messages too).
    public static func clientId(_ clientId: String, limits: Limits = Limits()) throws(ProtocolError) {
        guard (1...limits.maxClientIdLength).contains(clientId.count) else {
            throw ProtocolError(.invalid, "clientId must be 1 to \(limits.maxClientIdLength) characters")
        }
        guard !clientId.unicodeScalars.contains("\u{0}") else {
            throw ProtocolError(.invalid, "clientId must not contain U+0000")
        }
    }

    /// Whether content may not hold `scalar`: the C0 controls but tab and line feed (so carriage
    /// return too), DEL and the C1 controls.
    public static func isForbiddenInContent(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x09, 0x0A: false
        case 0x00...0x1F, 0x7F...0x9F: true
        default: false
        }
    }

    /// Whether a name (display name, room name) may not hold `scalar`: every control character,
    /// and the bidirectional formatting characters that can make a name read as another.
    public static func isForbiddenInName(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F, 0x202A...0x202E, 0x2066...0x2069: true
        default: false
        }
    }

    private static func checkName(_ raw: String, field: String) throws(ProtocolError) {
        if let control = raw.unicodeScalars.first(where: isForbiddenInName) {
            throw ProtocolError(.invalid, "\(field) must not contain the control or bidirectional formatting character \(describe(control))")
        }
    }

    /// `U+001B` for a scalar.
    static func describe(_ scalar: Unicode.Scalar) -> String {
        let hex = String(scalar.value, radix: 16, uppercase: true)
        return "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
    }

    /// White space at both ends removed, without Foundation.
    static func trimmed(_ text: String) -> String {
        let scalars = text.unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })!
        return String(scalars[first...last])
    }
}
