import NIOCore
import PostgresNIO
import SwitchboardProtocol
import SwitchboardStore

// MARK: Users

extension PostgresStore {
    /// Creates a user; `.conflict` when the username is taken in any case.
    public func createUser(_ new: NewUser) async throws -> User {
        let user = User(id: Ids.make("u_"), username: new.username, displayName: new.displayName, isBot: new.isBot)
        let inserted = try await read { connection in
            try await connection.rows(
                """
                INSERT INTO users (id, username, username_key, display_name, display_name_key, is_bot, password_hash, created_at)
                VALUES (\(user.id), \(user.username), \(caseKey(user.username)), \(user.displayName), \(caseKey(user.displayName)),
                        \(user.isBot), \(new.passwordHash), \(new.now))
                ON CONFLICT (username_key) DO NOTHING
                RETURNING id
                """, logger: logger)
        }
        guard !inserted.isEmpty else { throw StoreError(.conflict, "the username \(new.username) is taken") }
        return user
    }

    /// The user with this id.
    public func user(id: String) async throws -> User? {
        try await users(ids: [id]).first
    }

    /// The users with these ids that exist, ordered by username.
    public func users(ids: [String]) async throws -> [User] {
        try await read { connection in
            try await connection.rows(
                "SELECT \(unescaped: Columns.user("u")) FROM users u WHERE u.id = ANY(\(Array(Set(ids)))) ORDER BY u.username_key",
                logger: logger
            ).map { try Decode.user($0) }
        }
    }

    /// The user with this username, in any case, and their password hash.
    public func credentials(username: String) async throws -> Credentials? {
        try await read { connection in
            try await connection.rows(
                "SELECT \(unescaped: Columns.user("u")), u.password_hash FROM users u WHERE u.username_key = \(caseKey(username))",
                logger: logger
            ).first.map { Credentials(user: try Decode.user($0), passwordHash: try $0["password_hash"].decode(String?.self)) }
        }
    }

    /// Users whose username or display name contains `query` in any case, by username.
    /// `%` and `_` in the query match only themselves.
    public func searchUsers(query: String, limit: Int) async throws -> [User] {
        let pattern = containsPattern(query)
        return try await read { connection in
            try await connection.rows(
                """
                SELECT \(unescaped: Columns.user("u")) FROM users u
                WHERE u.username_key LIKE \(pattern) ESCAPE '\\' OR u.display_name_key LIKE \(pattern) ESCAPE '\\'
                ORDER BY u.username_key LIMIT \(max(limit, 0))
                """, logger: logger
            ).map { try Decode.user($0) }
        }
    }
}

// MARK: Tokens

extension PostgresStore {
    /// Stores a token's hash and returns its record; `.conflict` past `new.maxLive`.
    public func createToken(_ new: NewToken) async throws -> TokenRecord {
        let record = TokenRecord(
            id: Ids.make("t_"), userId: new.userId, name: new.name, kind: new.kind, createdAt: new.now,
            expiresAt: new.expiresAt, revokedAt: nil)
        let inserted = try await read { connection in
            try await connection.rows(
                """
                INSERT INTO tokens (id, user_id, hash, name, kind, created_at, expires_at)
                SELECT \(record.id), \(record.userId), \(ByteBuffer(bytes: new.hash)), \(record.name), \(record.kind.rawValue),
                       \(record.createdAt), \(record.expiresAt)
                WHERE \(new.maxLive)::bigint IS NULL OR (
                    SELECT count(*) FROM tokens
                    WHERE user_id = \(record.userId) AND kind = \(record.kind.rawValue) AND revoked_at IS NULL
                      AND (expires_at IS NULL OR expires_at > \(record.createdAt))
                ) < \(new.maxLive)
                RETURNING id
                """, logger: logger)
        }
        guard !inserted.isEmpty else { throw StoreError(.conflict, "the user holds \(new.maxLive ?? 0) live \(new.kind.rawValue) tokens, the most allowed") }
        return record
    }

    /// The token with this hash and its user, unless it is revoked or expired (`expiresAt <= now`).
    public func activeToken(hash: [UInt8], now: Int) async throws -> (token: TokenRecord, user: User)? {
        try await read { connection in
            try await connection.rows(
                """
                SELECT \(unescaped: Columns.token("t", prefix: "t_")), \(unescaped: Columns.user("u", prefix: "u_"))
                FROM tokens t JOIN users u ON u.id = t.user_id
                WHERE t.hash = \(ByteBuffer(bytes: hash)) AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > \(now))
                """, logger: logger
            ).first.map { (token: try Decode.token($0, prefix: "t_"), user: try Decode.user($0, prefix: "u_")) }
        }
    }

    /// Revokes a token not yet revoked; with `ownerId`, only a token of that user.
    public func revokeToken(id: String, ownerId: String?, now: Int) async throws -> TokenRecord? {
        try await read { connection in
            try await connection.rows(
                """
                UPDATE tokens t SET revoked_at = \(now)
                WHERE t.id = \(id) AND t.revoked_at IS NULL AND (\(ownerId)::text IS NULL OR t.user_id = \(ownerId))
                RETURNING \(unescaped: Columns.token("t"))
                """, logger: logger
            ).first.map { try Decode.token($0) }
        }
    }

    /// Tokens of one user, or of everybody, newest first.
    public func tokens(userId: String?) async throws -> [TokenRecord] {
        try await read { connection in
            try await connection.rows(
                """
                SELECT \(unescaped: Columns.token("t")) FROM tokens t
                WHERE \(userId)::text IS NULL OR t.user_id = \(userId)
                ORDER BY t.created_at DESC, t.position DESC
                """, logger: logger
            ).map { try Decode.token($0) }
        }
    }

    /// Ids of tokens revoked at or after `since`.
    public func tokensRevoked(since: Int) async throws -> [String] {
        try await read { connection in
            try await connection.rows("SELECT id FROM tokens WHERE revoked_at >= \(since)", logger: logger).map { try $0["id"].decode(String.self) }
        }
    }

    /// Deletes a user's expired tokens, and those revoked before `revokedBefore`.
    public func deleteDeadTokens(userId: String, now: Int, revokedBefore: Int) async throws -> Int {
        try await read { connection in
            try await connection.rows(
                "DELETE FROM tokens WHERE user_id = \(userId) AND (expires_at <= \(now) OR revoked_at < \(revokedBefore)) RETURNING id",
                logger: logger
            ).count
        }
    }
}
