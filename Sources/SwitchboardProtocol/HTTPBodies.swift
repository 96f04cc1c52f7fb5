/// `POST /api/register`.
public struct RegisterRequest: Codable, Sendable, Hashable {
    public var username: String
    public var password: String
    public var displayName: String?
    public init(username: String, password: String, displayName: String? = nil) {
        self.username = username
        self.password = password
        self.displayName = displayName
    }
}

/// `POST /api/login`.
public struct LoginRequest: Codable, Sendable, Hashable {
    public var username: String
    public var password: String
    public init(username: String, password: String) {
        self.username = username
        self.password = password
    }
}

/// The answer of `register` and `login`: the user and a new session token.
public struct AuthResponse: Codable, Sendable, Hashable {
    public var user: User
    public var token: String
    /// The session token's id, for `DELETE /api/tokens/{id}` (1.1).
    public var tokenId: String?
    /// When the session token expires, in milliseconds since the Unix epoch; nil: never (1.1).
    public var expiresAt: Int?
    public init(user: User, token: String, tokenId: String? = nil, expiresAt: Int? = nil) {
        self.user = user
        self.token = token
        self.tokenId = tokenId
        self.expiresAt = expiresAt
    }
}

/// `{user}`: the answer of `GET /api/me`.
public struct UserResponse: Codable, Sendable, Hashable {
    public var user: User
    public init(user: User) { self.user = user }
}

/// `POST /api/tokens`: a long-lived token for a bot or a script.
public struct CreateTokenRequest: Codable, Sendable, Hashable {
    public var name: String
    public var expiresInSeconds: Int?
    public init(name: String, expiresInSeconds: Int? = nil) {
        self.name = name
        self.expiresInSeconds = expiresInSeconds
    }
}

/// The answer of `POST /api/tokens`. The token is shown this once; the server keeps only its hash.
public struct CreateTokenResponse: Codable, Sendable, Hashable {
    public var id: String
    public var token: String
    public init(id: String, token: String) {
        self.id = id
        self.token = token
    }
}

/// `{users}`: the answer of `GET /api/users`.
public struct UsersResponse: Codable, Sendable, Hashable {
    public var users: [User]
    public init(users: [User]) { self.users = users }
}

/// `{rooms}`: the answer of `GET /api/rooms`.
public struct RoomsResponse: Codable, Sendable, Hashable {
    public var rooms: [RoomSummary]
    public init(rooms: [RoomSummary]) { self.rooms = rooms }
}

/// `POST /api/rooms`.
public struct CreateRoomRequest: Codable, Sendable, Hashable {
    public var name: String
    public var isPublic: Bool?
    public var members: [String]?
    public init(name: String, isPublic: Bool? = nil, members: [String]? = nil) {
        self.name = name
        self.isPublic = isPublic
        self.members = members
    }
}

/// `{room}`: the answer of the room routes.
public struct RoomResponse: Codable, Sendable, Hashable {
    public var room: Room
    public init(room: Room) { self.room = room }
}

/// `{userId}`: the body of `POST /api/rooms/{id}/members` and `POST /api/dms`.
public struct UserIdRequest: Codable, Sendable, Hashable {
    public var userId: String
    public init(userId: String) { self.userId = userId }
}

/// `{messages, hasMore}`: a page of history, ascending by `seq`.
public struct MessagesResponse: Codable, Sendable, Hashable {
    public var messages: [Message]
    /// Whether more exist beyond this page in the direction of paging.
    public var hasMore: Bool
    public init(messages: [Message], hasMore: Bool) {
        self.messages = messages
        self.hasMore = hasMore
    }
}

/// `{events, cursor}`: one long poll's answer.
public struct EventsResponse: Codable, Sendable {
    public var events: [Envelope<JSONValue>]
    /// Pass it to the next poll.
    public var cursor: String
    public init(events: [Envelope<JSONValue>], cursor: String) {
        self.events = events
        self.cursor = cursor
    }
}

/// `{status}`: the answer of `GET /healthz`.
public struct HealthResponse: Codable, Sendable, Hashable {
    public var status: String
    public init(status: String) { self.status = status }
}
