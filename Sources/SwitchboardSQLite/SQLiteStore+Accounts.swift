import SQLiteNIO
import SwitchboardProtocol
import SwitchboardStore

// MARK: Users

extension SQLiteStore {
    /// Creates a user; `.conflict` when the username is taken in any case.
    public func createUser(_ new: NewUser) async throws -> User {
        let user = User(id: Ids.make("u_"), username: new.username, displayName: new.displayName, isBot: new.isBot)
        let isStored = try await write { connection in
            let inserted = try await connection.query(
                """
                INSERT INTO users (id, username, username_key, display_name, display_name_key, is_bot, password_hash, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (username_key) DO NOTHING
                RETURNING id
                """,
                [
                    .text(user.id), .text(user.username), .text(Self.caseKey(user.username)), .text(user.displayName),
                    .text(Self.caseKey(user.displayName)), .integer(user.isBot ? 1 : 0), .optionalText(new.passwordHash),
                    .integer(new.now),
                ])
            return !inserted.isEmpty
        }
        guard isStored else { throw StoreError(.conflict, "the username \(new.username) is taken") }
        return user
    }

    /// The user with this id.
    public func user(id: String) async throws -> User? {
        try await users(ids: [id]).first
    }

    /// The users with these ids that exist, ordered by username.
    public func users(ids: [String]) async throws -> [User] {
        try await read { connection in
            var users: [User] = []
            for chunk in Array(Set(ids)).chunks(ofCount: SQL.maxVariables) {
                let rows = try await connection.query(
                    "SELECT \(Columns.user("u")) FROM users u WHERE u.id IN (\(SQL.list(chunk.count))) ORDER BY u.username_key",
                    chunk.map { .text($0) })
                users += try rows.map { try Decode.user($0) }
            }
            return users
        }
    }

    /// The user with this username, in any case, and their password hash.
    public func credentials(username: String) async throws -> Credentials? {
        try await read { connection in
            let rows = try await connection.query(
                "SELECT \(Columns.user("u")), u.password_hash AS password_hash FROM users u WHERE u.username_key = ?",
                [.text(Self.caseKey(username))])
            return try rows.first.map { Credentials(user: try Decode.user($0), passwordHash: try $0.optionalText("password_hash")) }
        }
    }

    /// Users whose username or display name contains `query` in any case, by username.
    /// `%` and `_` in the query match only themselves.
    public func searchUsers(query: String, limit: Int) async throws -> [User] {
        let pattern = Self.containsPattern(query)
        return try await read { connection in
            // Compared with keys lowercased by Swift, because SQLite's own LIKE folds only ASCII.
            try await connection.query(
                #"""
                SELECT \#(Columns.user("u")) FROM users u
                WHERE u.username_key LIKE ?1 ESCAPE '\' OR u.display_name_key LIKE ?1 ESCAPE '\'
                ORDER BY u.username_key LIMIT ?2
                """#, [.text(pattern), .integer(max(limit, 0))]
            ).map { try Decode.user($0) }
        }
    }

    /// The form of a name compared "without regard to case".
    static func caseKey(_ name: String) -> String {
        name.lowercased()
    }
}

// MARK: Tokens

extension SQLiteStore {
    /// Stores a token's hash and returns its record; `.conflict` past `new.maxLive`.
    public func createToken(_ new: NewToken) async throws -> TokenRecord {
        let record = TokenRecord(
            id: Ids.make("t_"), userId: new.userId, name: new.name, kind: new.kind, createdAt: new.now,
            expiresAt: new.expiresAt, revokedAt: nil)
        let isStored = try await write { connection in
            try await !connection.query(
                """
                INSERT INTO tokens (id, user_id, hash, name, kind, created_at, expires_at)
                SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7
                WHERE ?8 IS NULL OR (
                    SELECT count(*) FROM tokens
                    WHERE user_id = ?2 AND kind = ?5 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?6)
                ) < ?8
                RETURNING id
                """,
                [
                    .text(record.id), .text(record.userId), .blob(ByteBuffer(bytes: new.hash)), .text(record.name),
                    .text(record.kind.rawValue), .integer(record.createdAt), .optionalInteger(record.expiresAt),
                    .optionalInteger(new.maxLive),
                ]
            ).isEmpty
        }
        guard isStored else { throw StoreError(.conflict, "the user holds \(new.maxLive ?? 0) live \(new.kind.rawValue) tokens, the most allowed") }
        return record
    }

    /// The token with this hash and its user, unless it is revoked or expired (`expiresAt <= now`).
    public func activeToken(hash: [UInt8], now: Int) async throws -> (token: TokenRecord, user: User)? {
        try await read { connection in
            let rows = try await connection.query(
                """
                SELECT \(Columns.token("t", prefix: "t_")), \(Columns.user("u", prefix: "u_"))
                FROM tokens t JOIN users u ON u.id = t.user_id
                WHERE t.hash = ? AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > ?)
                """, [.blob(ByteBuffer(bytes: hash)), .integer(now)])
            return try rows.first.map { (token: try Decode.token($0, prefix: "t_"), user: try Decode.user($0, prefix: "u_")) }
        }
    }

    /// Revokes a token not yet revoked; with `ownerId`, only a token of that user.
    public func revokeToken(id: String, ownerId: String?, now: Int) async throws -> TokenRecord? {
        try await write { connection in
            try await connection.query(
                """
                UPDATE tokens SET revoked_at = ?1
                WHERE id = ?2 AND revoked_at IS NULL AND (?3 IS NULL OR user_id = ?3)
                RETURNING \(Columns.token(nil))
                """, [.integer(now), .text(id), .optionalText(ownerId)]
            ).first.map { try Decode.token($0) }
        }
    }

    /// Tokens of one user, or of everybody, newest first.
    public func tokens(userId: String?) async throws -> [TokenRecord] {
        try await read { connection in
            let rows =
                if let userId {
                    try await connection.query(
                        "SELECT \(Columns.token("t")) FROM tokens t WHERE t.user_id = ? ORDER BY t.created_at DESC, t.rowid DESC",
                        [.text(userId)])
                } else {
                    try await connection.query("SELECT \(Columns.token("t")) FROM tokens t ORDER BY t.created_at DESC, t.rowid DESC")
                }
            return try rows.map { try Decode.token($0) }
        }
    }

    /// Ids of tokens revoked at or after `since`.
    public func tokensRevoked(since: Int) async throws -> [String] {
        try await read { connection in
            try await connection.query("SELECT id FROM tokens WHERE revoked_at >= ?", [.integer(since)]).map { try $0.text("id") }
        }
    }

    /// Deletes a user's expired tokens, and those revoked before `revokedBefore`.
    public func deleteDeadTokens(userId: String, now: Int, revokedBefore: Int) async throws -> Int {
        try await write { connection in
            try await connection.query(
                "DELETE FROM tokens WHERE user_id = ?1 AND (expires_at <= ?2 OR revoked_at < ?3) RETURNING id",
                [.text(userId), .integer(now), .integer(revokedBefore)]
            ).count
        }
    }
}
