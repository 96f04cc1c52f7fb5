import SwitchboardProtocol
import SwitchboardStore

/// Accounts and tokens: `register`, `login`, bearer tokens, and the caller's own tokens.
///
/// Password work is bounded twice: every attempt takes a token of its client address's and of its
/// username's rate limit before anything else, and the hashing itself waits for a place on the
/// `PasswordHasher`'s bounded pool.
struct Accounts: Sendable {
    let service: ChatService
    let hasher: PasswordHasher
    private let addressLimiter: RateLimiter
    private let usernameLimiter: RateLimiter

    init(service: ChatService, hasher: PasswordHasher) {
        self.service = service
        self.hasher = hasher
        let configuration = service.configuration
        self.addressLimiter = RateLimiter(
            perSecond: configuration.authAttemptsPerMinutePerAddress / 60, burst: configuration.authAttemptsPerMinutePerAddress)
        self.usernameLimiter = RateLimiter(
            perSecond: configuration.authAttemptsPerMinutePerUsername / 60, burst: configuration.authAttemptsPerMinutePerUsername)
    }

    private var configuration: ServerConfiguration { service.configuration }
    private var store: any ChatStore { service.store }

    func register(_ request: RegisterRequest, from address: String) async throws -> AuthResponse {
        guard configuration.registration == .open else {
            throw ProtocolError(.forbidden, "registration is closed on this server; ask an administrator for an account")
        }
        try Validation.username(request.username)
        try PasswordHasher.validate(password: request.password)
        let displayName = try request.displayName.map { try Validation.displayName($0, limits: configuration.limits) } ?? request.username
        try takeAttempt(address: address, username: request.username)
        // A taken name costs no hashing: checked first, and again by the insert for a race.
        if try await service.storeCall({ try await store.credentials(username: request.username) }) != nil {
            throw ProtocolError(.conflict, "the username \(request.username) is taken")
        }
        let hash = try await hasher.hash(password: request.password)
        let user = try await service.storeCall {
            try await store.createUser(NewUser(username: request.username, displayName: displayName, passwordHash: hash, isBot: false, now: WallClock.milliseconds()))
        }
        return try await startSession(for: user)
    }

    func login(_ request: LoginRequest, from address: String) async throws -> AuthResponse {
        try takeAttempt(address: address, username: request.username)
        let refused = ProtocolError(.unauthorized, "wrong username or password")
        guard let found = try await service.storeCall({ try await store.credentials(username: request.username) }),
            let hash = found.passwordHash
        else {
            try await hasher.verifyAgainstDummy(password: request.password)
            throw refused
        }
        guard try await hasher.verify(password: request.password, hash: hash) else { throw refused }
        return try await startSession(for: found.user)
    }

    /// The identity behind a bearer token; `unauthorized` when it is unknown, revoked or expired.
    func authenticate(token: String) async throws -> Identity {
        let now = WallClock.milliseconds()
        guard let found = try await service.storeCall({ try await store.activeToken(hash: Credentials.hash(token: token), now: now) }) else {
            throw ProtocolError(.unauthorized, "the token is unknown, revoked or expired")
        }
        return Identity(user: found.user, tokenId: found.token.id, tokenExpiresAt: found.token.expiresAt)
    }

    func createToken(_ identity: Identity, _ request: CreateTokenRequest) async throws -> CreateTokenResponse {
        let name = try Validation.displayName(request.name, limits: configuration.limits)
        let now = WallClock.milliseconds()
        let expiresAt = try request.expiresInSeconds.map { seconds throws(ProtocolError) in try Credentials.expiry(now: now, seconds: seconds) }
        do {
            let (record, token) = try await issueToken(
                for: identity.user, name: name, kind: .api, now: now, expiresAt: expiresAt, maxLive: configuration.maxTokensPerUser)
            return CreateTokenResponse(id: record.id, token: token)
        } catch let error as ProtocolError where error.code == .conflict {
            throw ProtocolError(
                .conflict,
                "you hold \(configuration.maxTokensPerUser) live API tokens, the most allowed; revoke one first (GET /api/tokens lists them, DELETE /api/tokens/{id} revokes one)")
        }
    }

    /// The caller's live tokens, newest first.
    func tokens(_ identity: Identity) async throws -> TokensResponse {
        let now = WallClock.milliseconds()
        let records = try await service.storeCall { try await store.tokens(userId: identity.user.id) }
        let live = records.filter { $0.revokedAt == nil && ($0.expiresAt.map { $0 > now } ?? true) }
        return TokensResponse(tokens: live.map {
            TokenInfo(id: $0.id, name: $0.name, createdAt: $0.createdAt, expiresAt: $0.expiresAt, current: $0.id == identity.tokenId)
        })
    }

    /// Revokes one of the caller's tokens; its connections close at once.
    func revokeToken(_ identity: Identity, id: String) async throws {
        guard try await service.storeCall({ try await store.revokeToken(id: id, ownerId: identity.user.id, now: WallClock.milliseconds()) }) != nil else {
            throw ProtocolError(.notFound, "no token \(id) of yours")
        }
        service.hub.close(tokens: [id], .tokenRevoked)
    }

    /// A new session token for a user who just proved who they are.
    private func startSession(for user: User) async throws -> AuthResponse {
        let now = WallClock.milliseconds()
        let expiresAt = configuration.sessionLifetime.map { lifetime in
            now + min(max(Int(lifetime.components.seconds), 1), Credentials.maxLifetimeSeconds) * 1000
        }
        let (record, token) = try await issueToken(for: user, name: "session", kind: .session, now: now, expiresAt: expiresAt)
        return AuthResponse(user: user, token: token, tokenId: record.id, expiresAt: record.expiresAt)
    }

    private func issueToken(
        for user: User, name: String, kind: TokenKind, now: Int, expiresAt: Int?, maxLive: Int? = nil
    ) async throws -> (TokenRecord, String) {
        let (token, hash) = Credentials.newToken()
        let record = try await service.storeCall {
            try await store.createToken(NewToken(userId: user.id, hash: hash, name: name, kind: kind, now: now, expiresAt: expiresAt, maxLive: maxLive))
        }
        // Each login adds a token, and an expired one would stay for ever: a user's dead tokens go
        // as a new one comes. Revoked ones stay a while: other servers on the same database learn
        // of revocations from them. (The new token is made already: a failure here only logs.)
        do {
            _ = try await store.deleteDeadTokens(userId: user.id, now: now, revokedBefore: now - Self.revokedTokenRetention)
        } catch {
            service.logger.warning("cannot delete dead tokens", metadata: ["switchboard.user": "\(user.id)", "switchboard.error": "\(error)"])
        }
        return (record, token)
    }

    /// How long a revoked token is kept (milliseconds): a week.
    static let revokedTokenRetention = 7 * 24 * 3600 * 1000

    /// Takes one attempt from the client address's budget and the username's. Names that cannot
    /// be usernames (up to a request body long) share one budget: kept one by one, they would
    /// fill the limiter's table.
    private func takeAttempt(address: String, username: String) throws {
        let usernameKey = (try? Validation.username(username)) != nil ? username.lowercased() : ""
        for (limiter, key, what) in [(addressLimiter, address, "attempts from your address"), (usernameLimiter, usernameKey, "attempts for this username")] {
            if case .limited(let wait) = limiter.take(key) {
                throw ProtocolError(.rateLimited, "too many \(what); try again in \(wait.milliseconds) ms", retryAfterMs: wait.milliseconds)
            }
        }
    }
}
