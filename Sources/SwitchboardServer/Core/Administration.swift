import SwitchboardProtocol
import SwitchboardStore

/// What an administrator does to a server's database, with or without the server running:
/// the work behind `switchboard users`, `tokens` and `rooms`.
///
/// ```swift
/// let admin = Administration(store: store)
/// let (bot, token) = try await admin.addUser(username: "echo", password: nil, isBot: true)
/// ```
public struct Administration: Sendable {
    let store: any ChatStore
    let hasher: PasswordHasher

    public init(store: any ChatStore, bcryptCost: UInt8 = ServerConfiguration().bcryptCost) {
        self.store = store
        // One command hashes one password: the shared pool and no queue limit to speak of.
        self.hasher = PasswordHasher(cost: bcryptCost, pool: .singleton, capacity: 64)
    }

    /// Creates a user. A bot gets a long-lived API token, returned here once.
    public func addUser(username: String, displayName: String? = nil, password: String?, isBot: Bool) async throws -> (user: User, token: CreateTokenResponse?) {
        try Validation.username(username)
        if let password { try PasswordHasher.validate(password: password) }
        guard password != nil || isBot else {
            throw ProtocolError(.invalid, "a person needs a password; bots log in with a token")
        }
        var hash: String?
        if let password { hash = try await hasher.hash(password: password) }
        let user = try await store.createUser(
            NewUser(username: username, displayName: try displayName.map { try Validation.displayName($0) } ?? username, passwordHash: hash, isBot: isBot, now: WallClock.milliseconds())
        )
        guard isBot else { return (user, nil) }
        return (user, try await issueToken(userId: user.id, name: "bot"))
    }

    /// A new API token for an existing user; `invalid` when `expiresInSeconds` is out of range
    /// (1 second to 100 years).
    public func issueToken(userId: String, name: String, expiresInSeconds: Int? = nil) async throws -> CreateTokenResponse {
        let now = WallClock.milliseconds()
        let expiresAt = try expiresInSeconds.map { seconds throws(ProtocolError) in try Credentials.expiry(now: now, seconds: seconds, field: "the lifetime") }
        let (token, hash) = Credentials.newToken()
        let record = try await store.createToken(
            NewToken(userId: userId, hash: hash, name: name, kind: .api, now: now, expiresAt: expiresAt)
        )
        return CreateTokenResponse(id: record.id, token: token)
    }

    /// Every user, by username.
    public func users() async throws -> [User] {
        try await store.searchUsers(query: "", limit: Int(Int32.max))
    }

    /// A user by username, or `not_found`.
    public func user(named username: String) async throws -> User {
        guard let found = try await store.credentials(username: username) else {
            throw ProtocolError(.notFound, "no user named \(username); see 'switchboard users list'")
        }
        return found.user
    }

    /// Tokens, of one user or of all, newest first.
    public func tokens(userId: String? = nil) async throws -> [TokenRecord] {
        try await store.tokens(userId: userId)
    }

    /// Revokes a token. A running server closes its connections within a second.
    public func revokeToken(id: String) async throws {
        guard try await store.revokeToken(id: id, ownerId: nil, now: WallClock.milliseconds()) != nil else {
            throw ProtocolError(.notFound, "no active token \(id); see 'switchboard tokens list'")
        }
    }

    /// Creates a group room with these members (by username).
    public func addRoom(name: String, isPublic: Bool, memberNames: [String]) async throws -> Room {
        let name = try Validation.roomName(name)
        var memberIds: [String] = []
        for username in memberNames { memberIds.append(try await user(named: username).id) }
        return try await store.createRoom(NewRoom(name: name, isPublic: isPublic, creatorId: nil, memberIds: memberIds, now: WallClock.milliseconds()))
    }

    /// Every room.
    public func rooms() async throws -> [Room] {
        try await store.allRooms()
    }
}
