import SwitchboardProtocol

/// Durable storage of everything the server knows: users, tokens, rooms, members, messages, reactions.
///
/// The server talks only to this protocol, so that SQLite (the default) and PostgreSQL (for several
/// nodes) can stand behind it alike. Every method is safe to call from many tasks at once.
/// Writes that return have been committed: an ack built from their result means stored.
public protocol ChatStore: Sendable {
    // MARK: Users

    /// Creates a user. Throws `StoreError` with code `.conflict` when the username is taken
    /// (compared without regard to case).
    func createUser(_ user: NewUser) async throws -> User
    /// The user with this id.
    func user(id: String) async throws -> User?
    /// The users with these ids that exist, in no particular order.
    func users(ids: [String]) async throws -> [User]
    /// The user with this username (without regard to case) and their bcrypt password hash.
    func credentials(username: String) async throws -> Credentials?
    /// Users whose username or display name contains `query`, without regard to case, by username.
    func searchUsers(query: String, limit: Int) async throws -> [User]

    // MARK: Tokens

    /// Stores a token's SHA-256 hash; the token itself is never stored.
    func createToken(_ token: NewToken) async throws -> TokenRecord
    /// The token with this hash and its user, when it is neither revoked nor expired at `now`.
    func activeToken(hash: [UInt8], now: Int) async throws -> (token: TokenRecord, user: User)?
    /// Revokes a token. With `ownerId`, only a token of that user. Returns nil when there is no such
    /// (unrevoked) token.
    func revokeToken(id: String, ownerId: String?, now: Int) async throws -> TokenRecord?
    /// Tokens of one user, or of everybody, newest first.
    func tokens(userId: String?) async throws -> [TokenRecord]
    /// Ids of tokens revoked at or after `since`: how a server learns of revocations made by another
    /// process (the admin command) or another node.
    func tokensRevoked(since: Int) async throws -> [String]
    /// Deletes a user's tokens that can never be used again: those expired at `now`, and those
    /// revoked before `revokedBefore` (kept until then, so that every server sees the revocation in
    /// ``tokensRevoked(since:)``). Returns how many it deleted.
    func deleteDeadTokens(userId: String, now: Int, revokedBefore: Int) async throws -> Int

    // MARK: Rooms and members

    /// Creates a group room; the creator and `memberIds` become members.
    func createRoom(_ room: NewRoom) async throws -> Room
    /// The room with this id, with its members.
    func room(id: String) async throws -> Room?
    /// The group room with this name (without regard to case), the oldest when several share it.
    func room(named name: String) async throws -> Room?
    /// Every room, for administrators.
    func allRooms() async throws -> [Room]
    /// Public group rooms whose name contains `query` (without regard to case), by name, at most `limit`.
    func publicRooms(query: String, limit: Int) async throws -> [Room]
    /// The rooms `userId` is a member of, each with its newest message and the member's unread count.
    func rooms(memberId userId: String) async throws -> [RoomSummary]
    /// The rooms `userId` is a member of, without counting anything: what a connection needs.
    func memberRooms(userId: String) async throws -> [Room]
    /// Adds a member; adding an existing member changes nothing. Returns the room after the change.
    func addMember(roomId: String, userId: String, now: Int) async throws -> Room
    /// Removes a member. Returns nil when the user was not a member.
    func removeMember(roomId: String, userId: String) async throws -> Room?
    /// The direct room of two users, created on first use, the same one every time.
    func directRoom(between first: String, and second: String, now: Int) async throws -> Room
    /// Moves a member's read marker up to `seq` (never down).
    func markRead(roomId: String, userId: String, seq: Int) async throws
    /// The id of the user who created the room, nil for direct rooms and unknown rooms.
    func creator(roomId: String) async throws -> String?

    // MARK: Messages

    /// Queues messages to store, assigning each the next `seq` of its room, in the order given,
    /// and returns at once; `completion` gets the outcome once the transaction has committed.
    ///
    /// Calls are stored in the order they were made, so one sender's messages keep their order
    /// without waiting for each other. A message whose user, room and `clientId` match a stored
    /// one stores nothing and comes back as a duplicate. Concurrent callers are committed together
    /// in one transaction (group commit). The sender's read marker moves to the room's `lastSeq`.
    /// The `completion`s of all callers run one after another in call order (which, within a room,
    /// is commit order, even when several commits are in flight), so a server that publishes from
    /// them shows every room in `seq` order; they must not block.
    func submitAppend(_ messages: [NewMessage], completion: @escaping @Sendable (Result<[AppendResult], any Error>) -> Void)
    /// The message with this id.
    func message(id: String) async throws -> Message?
    /// A page of a room's history, ascending by `seq`, by the contract's paging rules
    /// (see ``HistoryWindow``). An unknown room has an empty history.
    func history(roomId: String, after: Int?, before: Int?, limit: Int) async throws -> HistoryPage
    /// The messages of a room with `seq > since`, read in one snapshot with the room's `lastSeq`.
    /// When more than `cap` are missed, returns none and `truncated`.
    func replay(roomId: String, since: Int, cap: Int) async throws -> Replay
    /// Adds or removes a user's reaction to a message; returns the message's new counts and
    /// whether they changed. Adding one already given, or removing one not given, changes nothing.
    func react(messageId: String, userId: String, reaction: String, action: ReactionAction, now: Int) async throws -> ReactionOutcome

    /// Finishes writes in flight and closes the store.
    func close() async throws
}

extension ChatStore {
    /// Filters ``allRooms()``: for a store without a better way.
    public func publicRooms(query: String, limit: Int) async throws -> [Room] {
        let key = query.lowercased()
        let rooms = try await allRooms().filter { $0.kind == .group && $0.isPublic && (key.isEmpty || $0.name.lowercased().contains(key)) }
        return Array(rooms.sorted { ($0.name.lowercased(), $0.id) < ($1.name.lowercased(), $1.id) }.prefix(max(limit, 0)))
    }

    /// Stores messages and returns once they are durable; see ``submitAppend(_:completion:)``.
    /// `onCommit` runs in call order (within a room, commit order), before this call returns.
    public func append(_ messages: [NewMessage], onCommit: (@Sendable ([AppendResult]) -> Void)? = nil) async throws -> [AppendResult] {
        try await withCheckedThrowingContinuation { continuation in
            submitAppend(messages) { result in
                if case .success(let results) = result { onCommit?(results) }
                continuation.resume(with: result)
            }
        }
    }

    /// Stores one message and returns once it is durable.
    public func append(_ message: NewMessage) async throws -> AppendResult {
        try await append([message])[0]
    }
}

/// A user to create.
public struct NewUser: Sendable, Hashable {
    public var username: String
    public var displayName: String
    /// bcrypt hash; nil for a bot that logs in with tokens only.
    public var passwordHash: String?
    public var isBot: Bool
    public var now: Int
    public init(username: String, displayName: String, passwordHash: String?, isBot: Bool, now: Int) {
        self.username = username
        self.displayName = displayName
        self.passwordHash = passwordHash
        self.isBot = isBot
        self.now = now
    }
}

/// A user and their password hash, for logging in.
public struct Credentials: Sendable, Hashable {
    public var user: User
    public var passwordHash: String?
    public init(user: User, passwordHash: String?) {
        self.user = user
        self.passwordHash = passwordHash
    }
}

/// Why a token exists.
public enum TokenKind: String, Sendable, Hashable, Codable {
    /// Made by `register` or `login`.
    case session
    /// Made by `POST /api/tokens` or `users add --bot`, for a bot or a script.
    case api
}

/// A token to store.
public struct NewToken: Sendable, Hashable {
    public var userId: String
    /// SHA-256 of the token.
    public var hash: [UInt8]
    public var name: String
    public var kind: TokenKind
    public var now: Int
    public var expiresAt: Int?
    /// When set, the token is stored only while its user holds fewer live tokens (not revoked, not
    /// expired at `now`) of its kind; otherwise ``StoreError/Code/conflict``. Concurrent creations may
    /// pass it by the few that race.
    public var maxLive: Int?
    public init(userId: String, hash: [UInt8], name: String, kind: TokenKind, now: Int, expiresAt: Int?, maxLive: Int? = nil) {
        self.userId = userId
        self.hash = hash
        self.name = name
        self.kind = kind
        self.now = now
        self.expiresAt = expiresAt
        self.maxLive = maxLive
    }
}

/// A stored token, without the token itself.
public struct TokenRecord: Sendable, Hashable, Codable {
    public var id: String
    public var userId: String
    public var name: String
    public var kind: TokenKind
    public var createdAt: Int
    public var expiresAt: Int?
    public var revokedAt: Int?
    public init(id: String, userId: String, name: String, kind: TokenKind, createdAt: Int, expiresAt: Int?, revokedAt: Int?) {
        self.id = id
        self.userId = userId
        self.name = name
        self.kind = kind
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.revokedAt = revokedAt
    }
}

/// A group room to create.
public struct NewRoom: Sendable, Hashable {
    public var name: String
    public var isPublic: Bool
    /// Becomes a member; nil for a room made by an administrator with no creator.
    public var creatorId: String?
    /// Other members; unknown ids are refused with `StoreError` `.notFound`.
    public var memberIds: [String]
    public var now: Int
    public init(name: String, isPublic: Bool, creatorId: String?, memberIds: [String], now: Int) {
        self.name = name
        self.isPublic = isPublic
        self.creatorId = creatorId
        self.memberIds = memberIds
        self.now = now
    }

    /// Every member, the creator first, each once, in order (a set for the look-up: a request of
    /// 1 MiB holds some 40,000 ids).
    public var allMemberIds: [String] {
        var seen: Set<String> = []
        return ([creatorId].compactMap { $0 } + memberIds).filter { seen.insert($0).inserted }
    }
}

/// A message to store; its content is already checked and trimmed.
public struct NewMessage: Sendable, Hashable {
    public var roomId: String
    public var userId: String
    public var content: String
    public var clientId: String?
    public var replyTo: String?
    public var meta: JSONValue?
    public var now: Int
    public init(roomId: String, userId: String, content: String, clientId: String?, replyTo: String?, meta: JSONValue?, now: Int) {
        self.roomId = roomId
        self.userId = userId
        self.content = content
        self.clientId = clientId
        self.replyTo = replyTo
        self.meta = meta
        self.now = now
    }
}

/// What `append` did with one message.
public struct AppendResult: Sendable, Hashable {
    /// The stored message (the earlier one, for a duplicate).
    public var message: Message
    /// True when the `clientId` was seen before and nothing was stored.
    public var duplicate: Bool
    public init(message: Message, duplicate: Bool) {
        self.message = message
        self.duplicate = duplicate
    }
}

/// What a reaction request did.
public struct ReactionOutcome: Sendable, Hashable {
    /// The message's counts after the request.
    public var reactions: [String: Int]
    /// False when the user had already given (or had not given) the reaction.
    public var changed: Bool
    public init(reactions: [String: Int], changed: Bool) {
        self.reactions = reactions
        self.changed = changed
    }
}

/// A page of a room's history: messages ascending by `seq`, and whether more lie beyond them in
/// the direction of paging.
public struct HistoryPage: Sendable, Hashable {
    public var messages: [Message]
    public var hasMore: Bool
    public init(messages: [Message], hasMore: Bool) {
        self.messages = messages
        self.hasMore = hasMore
    }
}

/// The answer of `replay`.
public struct Replay: Sendable, Hashable {
    /// Messages with `seq > since`, ascending; empty when truncated.
    public var messages: [Message]
    /// The room's newest `seq` in the same snapshot.
    public var lastSeq: Int
    /// More than the cap were missed.
    public var truncated: Bool
    public init(messages: [Message], lastSeq: Int, truncated: Bool) {
        self.messages = messages
        self.lastSeq = lastSeq
        self.truncated = truncated
    }
}

/// An error of the store: a code, a message, and the underlying cause.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure.
    public enum Code: String, Sendable {
        /// Unique key taken (username).
        case conflict
        /// A referenced row does not exist.
        case notFound
        /// The database cannot be opened or used.
        case unavailable
        /// The operation is not allowed (a third member in a direct room).
        case forbidden
    }

    public var code: Code
    public var message: String
    public var cause: (any Error)?

    public init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String {
        if let cause { return "\(message) (\(cause))" }
        return message
    }
}
