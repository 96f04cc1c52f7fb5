/// One of the caller's tokens in `GET /api/tokens` (1.1); never the token itself.
public struct TokenInfo: Codable, Sendable, Hashable {
    public var id: String
    /// `"session"` for the tokens of `register` and `login`; the given name for the others.
    public var name: String
    public var createdAt: Int
    public var expiresAt: Int?
    public var lastUsedAt: Int?
    /// Whether this is the token the request was made with.
    public var current: Bool
    public init(id: String, name: String, createdAt: Int, expiresAt: Int? = nil, lastUsedAt: Int? = nil, current: Bool) {
        self.id = id
        self.name = name
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.lastUsedAt = lastUsedAt
        self.current = current
    }
}

/// `{tokens}`: the answer of `GET /api/tokens` (1.1), newest first.
public struct TokensResponse: Codable, Sendable, Hashable {
    public var tokens: [TokenInfo]
    public init(tokens: [TokenInfo]) { self.tokens = tokens }
}

/// `{rooms}`: the answer of `GET /api/rooms/public` (1.1), sorted by name.
public struct PublicRoomsResponse: Codable, Sendable, Hashable {
    public var rooms: [Room]
    public init(rooms: [Room]) { self.rooms = rooms }
}
